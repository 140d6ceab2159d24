-- PostgreSQL only: the billing run's high-volume rows drop their foreign keys — each BO
-- order's three (account, vendor, subscription) and each invoice line's (document). A
-- foreign key check is a query per inserted row that also locks the parent row; by
-- `perf`, these took a third of the server's CPU in a billing run. The parents are never
-- deleted, and the run takes every id it writes from rows it read or wrote in the same
-- transaction. `integrity::dangling_references` checks these references as a whole: the
-- scenario tests and `cascade bench billing` run it. SQLite keeps them (cheap there,
-- and dropping one would rebuild the table).
{{postgres}}
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_account_id_fkey;
{{postgres}}
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_vendor_id_fkey;
{{postgres}}
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_subscription_id_fkey;
{{postgres}}
ALTER TABLE document_lines DROP CONSTRAINT IF EXISTS document_lines_document_id_fkey;
