-- Automatic charges: stored payment methods and one row per charge attempt.
--
-- A stored method keeps only the gateway's token and the card's last four digits,
-- never the card number. An automatic charge of a document is attempted at most once
-- per run date: `auto_charges (document_id, attempt_date)` is unique, and the gateway is
-- called with the idempotency key `auto:{document}:{date}`, so a run killed between
-- the gateway's answer and the commit finds its row `started` and finishes it with the
-- same key (the gateway recognises it) instead of charging again.

CREATE TABLE payment_methods (
    id {{pk}},
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    gateway TEXT NOT NULL,
    token TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_by BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX payment_methods_account ON payment_methods (account_id, id);

CREATE TABLE auto_charges (
    id {{pk}},
    document_id BIGINT NOT NULL REFERENCES documents (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    attempt_date TEXT NOT NULL,
    payment_method_id BIGINT NOT NULL REFERENCES payment_methods (id),
    amount_minor BIGINT NOT NULL,
    idem_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('started', 'approved', 'pending', 'declined')),
    reference TEXT,
    message TEXT,
    payment_document_id BIGINT REFERENCES documents (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX auto_charges_once ON auto_charges (document_id, attempt_date);
CREATE INDEX auto_charges_started ON auto_charges (status, id);

-- The daily credit check reads open documents by due date.
CREATE INDEX documents_open_due ON documents (due_date, account_id) WHERE open_minor > 0;
