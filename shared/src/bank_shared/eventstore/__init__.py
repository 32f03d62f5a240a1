"""A PostgreSQL event store with a transactional outbox, shared by every service that keeps one."""
