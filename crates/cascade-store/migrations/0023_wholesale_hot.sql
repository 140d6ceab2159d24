-- The run's consolidated wholesale rows grow with an upsert in every batch that bills
-- their plan (a 1M-subscription run: ~450,000 upserts into ~2,300 rows). The upsert
-- changes `amount_minor` and `periods`, which no index contains, so PostgreSQL can
-- update in place (HOT) when the page has room: most did not (15,554 of 67,322 were HOT
-- in a 200,000-subscription run), and each of the others wrote an entry in all five
-- indexes. Pages are filled to half so that the new versions fit.
{{postgres}}
ALTER TABLE wholesale_transactions SET (fillfactor = 50);
