-- Notifications: templates per seller and event (inherited live down the reseller chain
-- where a seller has no own copy), password reset tokens, and the rendered message and
-- delivery state of each outbox row.

CREATE TABLE notification_templates (
    id {{pk}},
    -- The seller (provider or reseller) owning this copy.
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    event TEXT NOT NULL,
    default_language TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX notification_templates_account_event ON notification_templates (account_id, event);

-- One language version of a template.
CREATE TABLE notification_template_texts (
    template_id BIGINT NOT NULL REFERENCES notification_templates (id),
    language TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT,
    PRIMARY KEY (template_id, language)
);

-- Single-use password reset tokens; only a SHA-256 of the token is stored.
CREATE TABLE password_reset_tokens (
    id {{pk}},
    user_id BIGINT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX password_reset_tokens_hash ON password_reset_tokens (token_hash);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id);

-- The message as rendered when queued (what is sent is what the API shows), and the
-- outcome of the last delivery attempt.
ALTER TABLE outbox ADD COLUMN subject TEXT;
ALTER TABLE outbox ADD COLUMN body_text TEXT;
ALTER TABLE outbox ADD COLUMN body_html TEXT;
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
CREATE INDEX outbox_account ON outbox (account_id, id);
