"""SQL migrations of the event store (applied in name order by bank_shared.eventstore.migrate)."""
