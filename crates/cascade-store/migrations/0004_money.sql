-- Money flows: card payments waiting at the payment gateway, and the tax rate a
-- document was issued with (printed on the invoice next to the tax amount).
--
-- A pending card charge is not money yet: it lives here, not in `documents`, until the
-- gateway confirms it. Then the payment document is written and `document_id` points to
-- it. `idem_key` carries the caller's Idempotency-Key, so a retried charge finds its
-- first attempt instead of charging again.

ALTER TABLE documents ADD COLUMN tax_bp BIGINT;

CREATE TABLE payment_attempts (
    id {{pk}},
    reference TEXT NOT NULL,
    gateway TEXT NOT NULL,
    issuer_account_id BIGINT NOT NULL REFERENCES accounts (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    card_last4 TEXT,
    apply_to TEXT NOT NULL,
    external_ref TEXT,
    idem_key TEXT,
    document_id BIGINT REFERENCES documents (id),
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX payment_attempts_reference ON payment_attempts (reference);
CREATE UNIQUE INDEX payment_attempts_idem ON payment_attempts (idem_key);
CREATE INDEX payment_attempts_account ON payment_attempts (account_id, id);
