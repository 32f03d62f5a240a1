"""PostgreSQL NOTIFY channels that more than one service uses."""

# The projector notifies it in every batch transaction that changed the read model; the query
# API listens to answer `min_version` reads (read-your-writes) as soon as the row is there.
READ_MODEL_CHANNEL = "bank_read_model"
