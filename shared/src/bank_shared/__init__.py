"""What every bank service shares: settings, contracts, domain, event store, messaging."""
