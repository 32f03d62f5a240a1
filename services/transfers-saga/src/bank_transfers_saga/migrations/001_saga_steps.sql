-- Every account command the saga has issued, so it can tell which answers are its own and
-- re-send a step that got no answer in time (with the same command id: harmless downstream).
CREATE TABLE saga_steps (
    command_id      uuid        PRIMARY KEY,
    transfer_id     text        NOT NULL,
    step            text        NOT NULL CHECK (step IN ('withdraw', 'deposit', 'refund')),
    topic           text        NOT NULL,
    key             text        NOT NULL,
    command         bytea       NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL,
    answered_at     timestamptz
);
CREATE INDEX saga_steps_due ON saga_steps (next_attempt_at) WHERE answered_at IS NULL;
CREATE INDEX saga_steps_transfer ON saga_steps (transfer_id);
