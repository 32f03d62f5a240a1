"""SQL migrations of the command API's own tables (applied by bank_shared.eventstore.migrate)."""
