-- The event store of one service: its events, its outbox, and what it has already processed.

-- Append-only history. (stream_id, version) is the optimistic-concurrency guard: two writers
-- that read the same version cannot both append the next one.
CREATE TABLE events (
    global_position bigserial   PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    envelope        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);

-- Messages to publish, written in the same transaction as the events that caused them.
-- The relay publishes them in id order and marks them; a purge deletes old published rows.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    message_id   uuid        NOT NULL,
    value        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Every message this service has acted on, with the answer it gave: a redelivered message is
-- recognised in the same transaction that would apply it, and gets the same answer again.
CREATE TABLE processed_messages (
    message_id   uuid        PRIMARY KEY,
    topic        text,
    key          text,
    answer       bytea,
    processed_at timestamptz NOT NULL DEFAULT now()
);
