-- The newest snapshot of each stream: its state at `version`, as made by the `evolve` whose
-- `fingerprint` it carries (eventstore/snapshots.py). A snapshot is never the truth, the events
-- are: a row that does not match the code, or its checksum, is ignored, and any row may be
-- deleted at any time.
CREATE TABLE snapshots (
    stream_id   text        PRIMARY KEY,
    version     integer     NOT NULL CHECK (version > 0),
    fingerprint text        NOT NULL,
    state       text        NOT NULL,
    checksum    text        NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT now()
);
