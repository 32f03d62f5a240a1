"""SQL migrations of the read model (applied in name order at projector start)."""
