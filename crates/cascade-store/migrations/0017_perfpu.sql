-- Panel performance (issue 5): the customer home shows the account's orders waiting for
-- payment. A partial index keeps that one query proportional to the waiting orders,
-- however many paid orders (one per renewal and billing run) the account has piled up.
CREATE INDEX orders_waiting ON orders (account_id, id) WHERE status = 'waiting_for_payment';
