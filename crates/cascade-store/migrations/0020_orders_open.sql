-- Unfinished orders of a subscription: a change or cancellation refuses a second order in
-- flight, and the invoice preview applies deferred changes. Without an index each such
-- read scanned every order (a 1M-subscription book adds a million BO orders a month).
-- Partial: the daily run's BO orders are written completed and never enter it, so the run
-- pays nothing for it.
CREATE INDEX orders_open_subscription ON orders (subscription_id, id) WHERE status NOT IN ('completed', 'cancelled');
