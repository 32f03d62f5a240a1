"""REST command API: validates requests, publishes commands to Kafka, answers with their outcome."""
