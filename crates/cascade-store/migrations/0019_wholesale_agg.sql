-- The daily run's recurring wholesale debts are consolidated: one row per (billing run,
-- billed day, tier plan, buyer), whose amount and count of subscription periods grow
-- with every batch of the run that bills that plan's subscriptions (an upsert in the
-- batch's transaction), instead of one row per BO order and reseller. Such a row has no
-- order (`order_id` NULL); it names the plan priced (`plan_id`, the vendor's copy), the
-- billing day (`billed_on`), how many subscription periods it sums (`periods`) and what
-- the tier invoice line says (`description`). Rows of SO/CH orders keep their order.
-- Measured at 1M subscriptions: 2M rows (each with five index entries, updated again
-- when invoiced) were two thirds of the run's writes.
{{postgres}}
ALTER TABLE wholesale_transactions ALTER COLUMN order_id DROP NOT NULL;
{{postgres}}
ALTER TABLE wholesale_transactions ADD COLUMN plan_id BIGINT;
{{postgres}}
ALTER TABLE wholesale_transactions ADD COLUMN billed_on TEXT;
{{postgres}}
ALTER TABLE wholesale_transactions ADD COLUMN periods BIGINT NOT NULL DEFAULT 1;
{{postgres}}
ALTER TABLE wholesale_transactions ADD COLUMN description TEXT;
-- SQLite cannot drop a NOT NULL: the table is rebuilt with the same rows and indexes.
{{sqlite}}
CREATE TABLE wholesale_transactions_v19 (
    id {{pk}},
    order_id BIGINT REFERENCES orders (id),
    buyer_account_id BIGINT NOT NULL REFERENCES accounts (id),
    seller_account_id BIGINT NOT NULL REFERENCES accounts (id),
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    charge_key TEXT NOT NULL,
    document_id BIGINT,
    created_at BIGINT NOT NULL,
    plan_id BIGINT,
    billed_on TEXT,
    periods BIGINT NOT NULL DEFAULT 1,
    description TEXT
);
{{sqlite}}
INSERT INTO wholesale_transactions_v19 (id, order_id, buyer_account_id, seller_account_id, currency, amount_minor, charge_key, document_id, created_at)
SELECT id, order_id, buyer_account_id, seller_account_id, currency, amount_minor, charge_key, document_id, created_at FROM wholesale_transactions;
{{sqlite}}
DROP TABLE wholesale_transactions;
{{sqlite}}
ALTER TABLE wholesale_transactions_v19 RENAME TO wholesale_transactions;
{{sqlite}}
CREATE UNIQUE INDEX wholesale_charge_key ON wholesale_transactions (charge_key);
{{sqlite}}
CREATE INDEX wholesale_uninvoiced ON wholesale_transactions (seller_account_id, buyer_account_id, document_id);
{{sqlite}}
CREATE INDEX wholesale_order ON wholesale_transactions (order_id);
{{sqlite}}
CREATE INDEX wholesale_buyer_open ON wholesale_transactions (buyer_account_id, id) WHERE document_id IS NULL;
