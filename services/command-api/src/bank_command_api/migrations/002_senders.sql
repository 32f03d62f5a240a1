-- Who sent each command, and the owner an OpenAccount names: GET /commands/{id} answers only
-- its sender (or a teller), and a customer's transfer may only take money from an account
-- this API opened for them.
ALTER TABLE commands ADD COLUMN subject text, ADD COLUMN owned_by text;

CREATE INDEX commands_opened_accounts ON commands (stream_id, owned_by)
    WHERE command_type = 'OpenAccount' AND status = 'accepted';

-- An Idempotency-Key belongs to the subject who sent it: two users' equal keys are two keys.
-- Keys sent before senders were known belong to the bank's teller.
ALTER TABLE idempotency_keys ADD COLUMN subject text NOT NULL DEFAULT 'teller';
ALTER TABLE idempotency_keys ALTER COLUMN subject DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (subject, key);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
