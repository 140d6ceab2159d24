-- Notices the daily billing run sends at most once per subscription and date (today:
-- `expiring`, the subscription ends on `on_date` and will not renew). The primary key is
-- the guard: the run inserts the row and emits the event in one transaction.
CREATE TABLE subscription_notices (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id),
    kind TEXT NOT NULL,
    on_date TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, kind, on_date)
);
