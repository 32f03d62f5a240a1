-- What a transfer is for, as its sender typed it (null: none given, or written before
-- transfers had one), on the transfer and on the activity rows of its withdrawal, deposit
-- and refund, so each account's history says what the money was for.
ALTER TABLE transfers ADD COLUMN description text;
ALTER TABLE account_activity ADD COLUMN description text;
