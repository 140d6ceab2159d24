-- Billing-run performance. `orders_vendor_status` (vendor_id, status) is read by no
-- query (orders are listed by account, by subscription and fetched by id), yet every BO
-- order the daily run writes (one per subscription and period) paid for an entry in it.
DROP INDEX orders_vendor_status;
