"""Accounts service: the BankAccount aggregate over its own Postgres event store."""
