-- Seller panel accounts and money: billing-screen visibility chosen per seller (inherited
-- down the reseller tree, the nearest own choice wins), and the indexes behind the
-- dashboard's money figures.

-- A seller's own choice of the billing screens its customers see; no row = inherit.
CREATE TABLE billing_visibility (
    account_id BIGINT NOT NULL PRIMARY KEY REFERENCES accounts (id),
    invoices BOOLEAN NOT NULL,
    payments BOOLEAN NOT NULL,
    balance BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Revenue this month: a seller's issued invoices by issue date.
CREATE INDEX documents_issuer_issued ON documents (issuer_account_id, kind, issue_date);
-- Open invoices: a seller's invoices still owed.
CREATE INDEX documents_issuer_open ON documents (issuer_account_id, currency) WHERE kind = 'invoice' AND open_minor > 0;
