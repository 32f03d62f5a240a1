-- Which relay publishes this database's outbox, until when. The leader renews its lease while it
-- makes progress; a leader that stops (crashed, paused, cut off) loses it when it expires, and a
-- standby takes it over. Each takeover counts one more `term`.
CREATE TABLE relay_lease (
    lease_key  bigint      PRIMARY KEY,
    holder     text        NOT NULL,
    term       bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
