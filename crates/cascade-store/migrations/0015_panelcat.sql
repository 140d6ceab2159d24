-- Seller panel lists: a seller's invoices, its customers' orders and subscriptions,
-- newest first, paginated by id (keyset), fast on a seller with 100k customers.

-- Invoices still owed, newest first (the "open" and "overdue" filters): the partial
-- index holds only what is still open, so a rare filter never scans paid history.
CREATE INDEX documents_issuer_open_id ON documents (issuer_account_id, id) WHERE kind = 'invoice' AND open_minor > 0;
-- The seller's customers' orders, newest first (`orders_vendor_status` has no id order).
CREATE INDEX orders_vendor_id ON orders (vendor_id, id);
-- The seller's customers' subscriptions, newest first, optionally of one status.
CREATE INDEX subscriptions_vendor_status ON subscriptions (vendor_id, status, id);
CREATE INDEX subscriptions_vendor_id ON subscriptions (vendor_id, id);
