-- Wholesale rows are read by order (the chain check of every order placed, the order
-- pages) and by buyer among the rows not yet invoiced (the chain check's exposure, the
-- tier invoices of a reseller's statement day). Measured during a 1M-subscription bench
-- run on PostgreSQL: with neither index, each order placement scanned all (~2M) rows.
CREATE INDEX wholesale_order ON wholesale_transactions (order_id);
CREATE INDEX wholesale_buyer_open ON wholesale_transactions (buyer_account_id, id) WHERE document_id IS NULL;
