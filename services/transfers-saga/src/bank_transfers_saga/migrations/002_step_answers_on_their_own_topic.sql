-- The saga reads the answers to its steps on a topic of their own (bank.transfer-step-outcomes),
-- which its account commands name as their return address (`reply_to`). A step sent before,
-- and not answered yet, is or was answered on bank.command-outcomes, which the saga no longer
-- reads: make it due now, so it is sent again at once naming the new topic. Same command id:
-- the accounts service applies it at most once, and sends its answer where the saga listens.
UPDATE saga_steps SET next_attempt_at = now() WHERE answered_at IS NULL;
