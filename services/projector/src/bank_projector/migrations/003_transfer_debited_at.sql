-- When the source was debited: with started_at and finished_at, a transfer's timeline
-- (started -> debited -> completed/failed) can be shown even when it moved too fast to watch.
ALTER TABLE transfers ADD COLUMN debited_at timestamptz;
