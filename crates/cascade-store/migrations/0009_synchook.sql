-- Plan → subscriptions synchronization.
--
-- A subscription keeps the plan terms it was sold at (`terms`, a JSON snapshot of the
-- plan content) until a sync with the "update subscriptions" option reaches its
-- seller's copy. Such a sync writes the new limits and terms into `terms` at once and
-- the new prices as `next_terms` (the whole new content), in force for charges whose
-- period starts on or after `next_terms_from` (the subscription's next billing date at
-- the time of the sync): never retroactively. NULL `terms` is a subscription written
-- before this migration: it reads its plan's live content, as it always did.
ALTER TABLE subscriptions ADD COLUMN terms TEXT;
ALTER TABLE subscriptions ADD COLUMN next_terms TEXT;
ALTER TABLE subscriptions ADD COLUMN next_terms_from TEXT;

-- The audit: how many subscriptions a sync run updated, in total and per copy.
ALTER TABLE sync_runs ADD COLUMN subscriptions_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_run_items ADD COLUMN subscriptions_changed INTEGER NOT NULL DEFAULT 0;
