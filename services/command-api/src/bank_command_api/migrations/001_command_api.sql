-- What the command API has sent and what became of it. The outbox comes from the shared
-- event store migration; a command's row and its outbox row are written in one transaction.

-- One row per command sent; the outcome consumer fills in the decision exactly once
-- (UPDATE ... WHERE status = 'pending'), so a redelivered outcome changes nothing.
CREATE TABLE commands (
    command_id   uuid        PRIMARY KEY,
    command_type text        NOT NULL,
    stream_id    text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'accepted', 'rejected')),
    code         text,
    reason       text,
    version      integer,
    balance      numeric(18, 2),
    outcome      jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz
);

-- Idempotency-Key -> the one command it stands for. The primary key is what makes two
-- concurrent requests with the same key agree: the second INSERT ... ON CONFLICT waits for the
-- first transaction and then finds its row. The foreign key is checked at commit, because the
-- key is claimed before its command row is written.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    fingerprint  text        NOT NULL,
    command_id   uuid        NOT NULL
                             REFERENCES commands (command_id) DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);
