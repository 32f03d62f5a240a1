-- The read model: tables shaped for the query API. Each row remembers the version of the
-- stream it reflects; that version is the projection's checkpoint for the stream, written in
-- the same transaction as the row, so an event is applied exactly once and in order.

CREATE TABLE accounts (
    account_id text          PRIMARY KEY,
    owner      text          NOT NULL,
    balance    numeric(17,2) NOT NULL,
    version    integer       NOT NULL,
    opened_at  timestamptz   NOT NULL,
    updated_at timestamptz   NOT NULL
);
CREATE INDEX accounts_opened_at ON accounts (opened_at, account_id);

-- One row per account event, for history views (newest first).
CREATE TABLE account_activity (
    account_id    text          NOT NULL,
    version       integer       NOT NULL,
    type          text          NOT NULL,
    amount        numeric(17,2) NOT NULL,
    balance_after numeric(17,2) NOT NULL,
    transfer_id   text,
    occurred_at   timestamptz   NOT NULL,
    PRIMARY KEY (account_id, version)
);

CREATE TABLE transfers (
    transfer_id       text          PRIMARY KEY,
    source_account_id text          NOT NULL,
    target_account_id text          NOT NULL,
    amount            numeric(17,2) NOT NULL,
    status            text          NOT NULL
        CHECK (status IN ('started', 'debited', 'completed', 'failed')),
    reason            text,
    refunded          boolean       NOT NULL DEFAULT false,
    started_at        timestamptz   NOT NULL,
    finished_at       timestamptz,
    version           integer       NOT NULL
);
CREATE INDEX transfers_started_at ON transfers (started_at DESC, transfer_id);
CREATE INDEX transfers_source ON transfers (source_account_id, started_at DESC);
CREATE INDEX transfers_target ON transfers (target_account_id, started_at DESC);
CREATE INDEX transfers_status ON transfers (status, started_at DESC);
