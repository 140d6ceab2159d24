-- Orders, subscriptions and money.
--
-- Amounts on documents are integers in the currency's minor unit (`*_minor`); unit
-- prices keep six decimals (`*_micro`). Dates of the billing calendar are ISO
-- `YYYY-MM-DD` text (they sort and compare as dates on both backends); instants stay
-- microseconds since the epoch.
--
-- Exactly-once charging: every charge line carries a `charge_key` derived from what it
-- bills (subscription, period, kind) under a unique index, so a billing run that is
-- killed and re-run for the same date can never write the same charge twice.

ALTER TABLE accounts ADD COLUMN statement_day INTEGER NOT NULL DEFAULT 1;

ALTER TABLE customer_classes ADD COLUMN due_days INTEGER NOT NULL DEFAULT 14;
ALTER TABLE customer_classes ADD COLUMN grace_days INTEGER NOT NULL DEFAULT 7;
ALTER TABLE customer_classes ADD COLUMN hold_days INTEGER NOT NULL DEFAULT 30;
ALTER TABLE customer_classes ADD COLUMN credit_limit_minor BIGINT;
ALTER TABLE customer_classes ADD COLUMN auto_credit_hold BOOLEAN NOT NULL DEFAULT TRUE;
-- Net terms: automatic charges are taken this many days after issue (never on the issue day).
ALTER TABLE customer_classes ADD COLUMN payment_delay_days INTEGER;
-- Pay-as-you-go: days between a short balance and suspension.
ALTER TABLE customer_classes ADD COLUMN payg_grace_days INTEGER NOT NULL DEFAULT 5;

CREATE TABLE subscriptions (
    id {{pk}},
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    vendor_id BIGINT NOT NULL REFERENCES accounts (id),
    plan_id BIGINT NOT NULL REFERENCES plans (id),
    period_uid TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date TEXT NOT NULL,
    -- End of the current subscription period (expiry unless renewed).
    expires_on TEXT NOT NULL,
    -- Next date the daily run has something to bill.
    next_bill_date TEXT NOT NULL,
    auto_renew TEXT NOT NULL,
    -- JSON: {rate uid: quantity}
    quantities TEXT NOT NULL,
    -- JSON: order attributes and service parameters given at purchase.
    attributes TEXT NOT NULL,
    -- A pay-as-you-go subscription whose balance ran short is suspended after this date.
    suspension_deadline TEXT,
    data_removed BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX subscriptions_account ON subscriptions (account_id, id);
CREATE INDEX subscriptions_due ON subscriptions (next_bill_date, id);
CREATE INDEX subscriptions_plan ON subscriptions (plan_id);

CREATE TABLE orders (
    id {{pk}},
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    vendor_id BIGINT NOT NULL REFERENCES accounts (id),
    subscription_id BIGINT REFERENCES subscriptions (id),
    order_type TEXT NOT NULL,
    status TEXT NOT NULL,
    -- Why the order waits or failed, for people.
    reason TEXT,
    currency TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    details TEXT NOT NULL,
    placed_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_account ON orders (account_id, id);
CREATE INDEX orders_vendor_status ON orders (vendor_id, status);

-- What each reseller in the chain owes its vendor for an order, at the vendor's price then.
CREATE TABLE wholesale_transactions (
    id {{pk}},
    order_id BIGINT NOT NULL REFERENCES orders (id),
    buyer_account_id BIGINT NOT NULL REFERENCES accounts (id),
    seller_account_id BIGINT NOT NULL REFERENCES accounts (id),
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    charge_key TEXT NOT NULL,
    document_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX wholesale_charge_key ON wholesale_transactions (charge_key);
CREATE INDEX wholesale_uninvoiced ON wholesale_transactions (seller_account_id, buyer_account_id, document_id);

-- Invoices, payments, credit memos, debit memos, refunds.
CREATE TABLE documents (
    id {{pk}},
    kind TEXT NOT NULL CHECK (kind IN ('invoice', 'payment', 'credit_memo', 'debit_memo', 'refund')),
    -- Sequential per issuer and kind, assigned when issued.
    number TEXT,
    issuer_account_id BIGINT NOT NULL REFERENCES accounts (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'issued', 'void')),
    subtotal_minor BIGINT NOT NULL,
    tax_minor BIGINT NOT NULL,
    total_minor BIGINT NOT NULL,
    -- What is still to be paid (invoices, debit memos) or applied (payments, credit memos).
    open_minor BIGINT NOT NULL,
    issue_date TEXT,
    due_date TEXT,
    -- Net terms: the day an automatic charge is taken.
    charge_date TEXT,
    method TEXT,
    external_ref TEXT,
    idem_key TEXT,
    created_at BIGINT NOT NULL,
    issued_at BIGINT
);
CREATE INDEX documents_account ON documents (account_id, kind, id);
CREATE INDEX documents_issuer ON documents (issuer_account_id, kind, id);
CREATE UNIQUE INDEX documents_number ON documents (issuer_account_id, kind, number);
CREATE UNIQUE INDEX documents_idem ON documents (idem_key);

CREATE TABLE document_sequences (
    issuer_account_id BIGINT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL,
    next_number BIGINT NOT NULL,
    PRIMARY KEY (issuer_account_id, kind)
);

CREATE TABLE document_lines (
    id {{pk}},
    document_id BIGINT NOT NULL REFERENCES documents (id),
    subscription_id BIGINT,
    line_kind TEXT NOT NULL,
    description TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_price_micro BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    period_start TEXT,
    period_end TEXT,
    charge_key TEXT
);
CREATE INDEX document_lines_document ON document_lines (document_id, id);
CREATE UNIQUE INDEX document_lines_charge_key ON document_lines (charge_key);

-- A payment or credit memo applied to an invoice or debit memo.
CREATE TABLE allocations (
    id {{pk}},
    from_document_id BIGINT NOT NULL REFERENCES documents (id),
    to_document_id BIGINT NOT NULL REFERENCES documents (id),
    amount_minor BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX allocations_from ON allocations (from_document_id);
CREATE INDEX allocations_to ON allocations (to_document_id);

CREATE TABLE usage_records (
    id {{pk}},
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id),
    -- The sender's id of the record: importing it twice is refused.
    external_id TEXT NOT NULL,
    rate_uid TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    usage_date TEXT NOT NULL,
    -- The invoice line that billed it.
    billed_line_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX usage_records_external ON usage_records (subscription_id, external_id);
CREATE INDEX usage_records_unbilled ON usage_records (subscription_id, billed_line_id);

CREATE TABLE billing_runs (
    id {{pk}},
    run_date TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    accounts_done INTEGER NOT NULL,
    accounts_failed INTEGER NOT NULL,
    subscriptions_billed INTEGER NOT NULL,
    documents_written INTEGER NOT NULL,
    lines_written INTEGER NOT NULL
);
