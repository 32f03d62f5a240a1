"""Kafka plumbing shared by the services: producers, topics, batch consumption, dead letters."""
