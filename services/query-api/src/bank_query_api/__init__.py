"""REST query API over the read database."""
