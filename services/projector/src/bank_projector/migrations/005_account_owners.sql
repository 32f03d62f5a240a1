-- Who owns each account: the login named by AccountOpened v2 (`owned_by`). Rows projected
-- before owners existed were opened before them, and their events upcast to the bank's
-- teller, so that is what they get here (a rebuild writes the same from the events).
ALTER TABLE accounts ADD COLUMN owned_by text NOT NULL DEFAULT 'teller';

-- The query API shows a customer only their own accounts, in the order it lists them, and
-- only the transfers from or to them: this index finds a customer's accounts (in that order),
-- transfers_source and transfers_target then find their transfers.
CREATE INDEX accounts_owned_by ON accounts (owned_by, opened_at, account_id);
