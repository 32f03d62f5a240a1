"""Projector: builds the read database from the account and transfer events."""
