-- Streams the projector stopped following because one of their events could not be applied
-- (unreadable, or of a schema this version does not know). The event is in the dead-letter
-- topic; the stream's later events are skipped until an operator fixes the cause and runs a
-- rebuild. Other streams go on.
CREATE TABLE parked_streams (
    stream_id  text        PRIMARY KEY,
    version    integer,
    reason     text        NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now()
);
