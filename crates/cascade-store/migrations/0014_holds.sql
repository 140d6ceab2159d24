-- Account holds move subscriptions; the daily run terminates what stayed on hold.
-- `held_on`: the run date (YYYY-MM-DD) a subscription went on hold; the hold period
-- (credit terms `hold_days`) counts from it. `held_by`: what put it there, `account` (a
-- credit or administrative hold of its account: released with that hold) or `payg` (its
-- own pay-as-you-go deadline); NULL when not held. `terminated_on`: the date it was
-- terminated (NULL otherwise).
ALTER TABLE subscriptions ADD COLUMN held_on TEXT;
ALTER TABLE subscriptions ADD COLUMN held_by TEXT;
ALTER TABLE subscriptions ADD COLUMN terminated_on TEXT;
-- The run's termination scan and an account's held subscriptions.
CREATE INDEX subscriptions_status ON subscriptions (status, id);
