-- The daily run moves every due subscription (`next_bill_date`, `expires_on`, `version`,
-- `updated_at`; `status` keeps its value on a renewal). With `next_bill_date` indexed,
-- each move was a non-HOT update: a new entry in all seven indexes of the table. The
-- index served only the run's one query for the accounts due (PostgreSQL scanned the
-- table for it anyway when many were due); without it that query is one sequential scan
-- per run (a fraction of a second at a million subscriptions). No indexed column changes
-- on a renewal any more, so PostgreSQL can update the row in place on its page (HOT: no
-- new index entries), and SQLite has one index less to update.
DROP INDEX subscriptions_due;
-- HOT needs room on the page for the new version. A run updates all the due rows of a
-- page in one transaction (accounts are billed in id order, which follows the table's
-- physical order), so the old versions cannot be pruned before it commits: pages are
-- filled to half. Applies to pages written from now on; `VACUUM FULL subscriptions`
-- rewrites the existing ones.
{{postgres}}
ALTER TABLE subscriptions SET (fillfactor = 50);
