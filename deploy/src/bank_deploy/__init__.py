"""Local launcher for the infrastructure: Apache Kafka (KRaft) and PostgreSQL."""
