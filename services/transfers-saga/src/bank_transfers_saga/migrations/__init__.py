"""SQL migrations of the transfers saga (after the shared event store ones)."""
