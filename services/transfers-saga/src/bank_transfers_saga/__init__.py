"""Transfers service: the Transfer aggregate and the MoneyTransfer process manager."""
