-- A step whose stored command cannot be sent again (it no longer reads as a command) is
-- dead-lettered once and then left alone: it is no longer due.
ALTER TABLE saga_steps ADD COLUMN dead_lettered_at timestamptz;
DROP INDEX saga_steps_due;
CREATE INDEX saga_steps_due ON saga_steps (next_attempt_at)
    WHERE answered_at IS NULL AND dead_lettered_at IS NULL;
