-- The catalog: resource types and categories, service templates with per-reseller
-- provisioning overrides, sales categories, plans and their delegated copies, and the
-- synchronization settings and audit trail.
--
-- Multilingual texts and nested plan content are JSON documents in TEXT columns; prices
-- inside plan content are integers (millionths of the currency unit). Columns that lists
-- filter or sort on are kept as real columns beside the document.

CREATE TABLE resource_categories (
    id {{pk}},
    owner_account_id BIGINT NOT NULL REFERENCES accounts (id),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Up-sell: resources of this category can only be bought together with this parent resource.
    parent_resource_type_id BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX resource_categories_owner_code ON resource_categories (owner_account_id, code);

CREATE TABLE resource_types (
    id {{pk}},
    owner_account_id BIGINT NOT NULL REFERENCES accounts (id),
    code TEXT NOT NULL,
    -- The connector (service) that provisions it.
    service TEXT NOT NULL,
    unit TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    category_id BIGINT REFERENCES resource_categories (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX resource_types_owner_code ON resource_types (owner_account_id, code);

CREATE TABLE service_templates (
    id {{pk}},
    owner_account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    -- JSON: [{resource_type_id, default_limit}]
    resources TEXT NOT NULL,
    -- JSON: {key: {type, value}}
    settings TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX service_templates_owner ON service_templates (owner_account_id);

-- A reseller's provisioning settings for its own customers on a delegated template.
CREATE TABLE template_overrides (
    template_id BIGINT NOT NULL REFERENCES service_templates (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (template_id, account_id)
);

CREATE TABLE sales_categories (
    id {{pk}},
    owner_account_id BIGINT NOT NULL REFERENCES accounts (id),
    parent_id BIGINT REFERENCES sales_categories (id),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    sort INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX sales_categories_owner_code ON sales_categories (owner_account_id, code);
CREATE INDEX sales_categories_parent ON sales_categories (owner_account_id, parent_id, sort);

CREATE TABLE plans (
    id {{pk}},
    owner_account_id BIGINT NOT NULL REFERENCES accounts (id),
    template_id BIGINT NOT NULL REFERENCES service_templates (id),
    -- The provider's (or first seller's) original; NULL on an original.
    root_plan_id BIGINT REFERENCES plans (id),
    -- The copy this copy was delegated from; NULL on an original.
    parent_plan_id BIGINT REFERENCES plans (id),
    currency TEXT NOT NULL,
    content TEXT NOT NULL,
    published BOOLEAN NOT NULL,
    visible BOOLEAN NOT NULL,
    -- Withdrawn from the store until the owner confirms prices a sync added.
    withdrawn BOOLEAN NOT NULL,
    -- A one-level sync changed this copy; its own copies have not received it yet.
    upstream_changes BOOLEAN NOT NULL,
    listing_priority INTEGER NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX plans_parent_owner ON plans (parent_plan_id, owner_account_id);
CREATE INDEX plans_root ON plans (root_plan_id, id);
CREATE INDEX plans_owner ON plans (owner_account_id, listing_priority);

-- Set by a reseller's vendor: what synchronization may never change on its copies.
CREATE TABLE sync_settings (
    account_id BIGINT NOT NULL PRIMARY KEY REFERENCES accounts (id),
    lock_prices BOOLEAN NOT NULL,
    lock_terms BOOLEAN NOT NULL,
    lock_plan_categories BOOLEAN NOT NULL,
    lock_resource_categories BOOLEAN NOT NULL,
    lock_sales_categories BOOLEAN NOT NULL,
    lock_publication BOOLEAN NOT NULL,
    cascade_stop BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sync_runs (
    id {{pk}},
    plan_id BIGINT NOT NULL REFERENCES plans (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    actor_user_id BIGINT,
    options TEXT NOT NULL,
    scope TEXT NOT NULL,
    copies_total INTEGER NOT NULL,
    copies_changed INTEGER NOT NULL,
    copies_failed INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX sync_runs_plan ON sync_runs (plan_id, id);

CREATE TABLE sync_run_items (
    run_id BIGINT NOT NULL REFERENCES sync_runs (id),
    plan_id BIGINT NOT NULL,
    owner_account_id BIGINT NOT NULL,
    level INTEGER NOT NULL,
    -- changed, unchanged or failed
    status TEXT NOT NULL,
    changes TEXT NOT NULL,
    blocked TEXT NOT NULL,
    withdrawn BOOLEAN NOT NULL,
    upstream_pending BOOLEAN NOT NULL,
    error TEXT,
    PRIMARY KEY (run_id, plan_id)
);
