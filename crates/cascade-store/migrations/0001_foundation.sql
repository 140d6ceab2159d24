-- Cascade foundation schema.
--
-- One history for both backends: `{{pk}}` becomes the backend's auto-increment primary
-- key. Everything else is a shared subset: BIGINT for ids, money (minor units) and
-- times (microseconds since the Unix epoch, UTC), TEXT, BOOLEAN.

CREATE TABLE customer_classes (
    id {{pk}},
    -- The seller that defines this class for its customers.
    owner_account_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX customer_classes_owner_name ON customer_classes (owner_account_id, name);

CREATE TABLE accounts (
    id {{pk}},
    kind TEXT NOT NULL CHECK (kind IN ('provider', 'reseller', 'customer')),
    vendor_id BIGINT REFERENCES accounts (id),
    name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    address_line1 TEXT,
    address_line2 TEXT,
    city TEXT,
    postal_code TEXT,
    tax_id TEXT,
    country TEXT NOT NULL,
    language TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'credit_hold', 'admin_hold', 'cancelled')),
    customer_class_id BIGINT REFERENCES customer_classes (id),
    -- Distance from the provider (provider = 0, L1 = 1, ...).
    depth INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((kind = 'provider') = (vendor_id IS NULL))
);
CREATE INDEX accounts_vendor ON accounts (vendor_id);
CREATE UNIQUE INDEX accounts_one_provider ON accounts (kind) WHERE kind = 'provider';

-- Closure table of the account tree: one row per (ancestor, descendant) pair including
-- (a, a) at depth 0. Descendants of X: one range scan of the primary key; vendor chain of
-- Y: one range scan of accounts_closure_up. No recursive walks, on either backend.
CREATE TABLE account_closure (
    ancestor_id BIGINT NOT NULL REFERENCES accounts (id),
    descendant_id BIGINT NOT NULL REFERENCES accounts (id),
    depth INTEGER NOT NULL,
    PRIMARY KEY (ancestor_id, descendant_id)
);
CREATE INDEX account_closure_up ON account_closure (descendant_id, depth);

CREATE TABLE users (
    id {{pk}},
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL,
    language TEXT,
    password_hash TEXT,
    disabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Bumped on password change and disable: sessions issued before are void.
    credentials_version BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_login ON users (login);
CREATE INDEX users_account ON users (account_id);

CREATE TABLE roles (
    id {{pk}},
    -- NULL for built-in roles, else the account that defined the custom role.
    account_id BIGINT REFERENCES accounts (id),
    builtin_key TEXT,
    name TEXT NOT NULL,
    description TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_builtin_key ON roles (builtin_key);
CREATE UNIQUE INDEX roles_account_name ON roles (account_id, name);

CREATE TABLE role_grants (
    role_id BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    privilege TEXT NOT NULL,
    level INTEGER,
    PRIMARY KEY (role_id, privilege)
);

CREATE TABLE user_roles (
    user_id BIGINT NOT NULL REFERENCES users (id),
    role_id BIGINT NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role ON user_roles (role_id);

CREATE TABLE sessions (
    id {{pk}},
    token_hash TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    credentials_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    source_addr TEXT
);
CREATE UNIQUE INDEX sessions_token ON sessions (token_hash);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id {{pk}},
    user_id BIGINT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    -- First characters of the token, shown in lists so a person can tell tokens apart.
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE idempotency_keys (
    id {{pk}},
    user_id BIGINT NOT NULL,
    idem_key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    -- NULL while the first request with this key is still being processed.
    status_code INTEGER,
    response_body TEXT,
    response_content_type TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX idempotency_keys_user_key ON idempotency_keys (user_id, idem_key);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE events (
    id {{pk}},
    kind TEXT NOT NULL,
    account_id BIGINT,
    actor_user_id BIGINT,
    subject_type TEXT NOT NULL,
    subject_id BIGINT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX events_pending ON events (state, id);
CREATE INDEX events_finished ON events (finished_at);
CREATE INDEX events_account ON events (account_id, id);

CREATE TABLE tasks (
    id {{pk}},
    kind TEXT NOT NULL,
    event_id BIGINT REFERENCES events (id) ON DELETE SET NULL,
    account_id BIGINT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at BIGINT NOT NULL,
    last_error TEXT,
    locked_by TEXT,
    locked_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX tasks_runnable ON tasks (state, run_at);
CREATE INDEX tasks_account ON tasks (account_id, id);
CREATE INDEX tasks_finished ON tasks (finished_at);
CREATE INDEX tasks_event ON tasks (event_id);

-- Messages waiting to be delivered (email); the notifications module sends them.
CREATE TABLE outbox (
    id {{pk}},
    account_id BIGINT,
    user_id BIGINT,
    template TEXT NOT NULL,
    recipient TEXT NOT NULL,
    language TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- Set by producers that must queue a message at most once (e.g. `welcome_user:42`).
    dedup_key TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_unsent ON outbox (sent_at, id);
CREATE UNIQUE INDEX outbox_dedup ON outbox (dedup_key);
