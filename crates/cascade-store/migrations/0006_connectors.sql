-- Connector instances (issue 6): where a service's connector runs and how Cascade
-- trusts it. The secret signs both directions; it is never returned by the API.
CREATE TABLE connector_instances (
    id {{pk}},
    owner_account_id BIGINT NOT NULL REFERENCES accounts (id),
    -- The service name resource types point at (resource_types.service).
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- Hex SHA-256 of the pinned certificate's DER; NULL = web PKI.
    cert_pin TEXT,
    timeout_ms BIGINT NOT NULL,
    last_check_at BIGINT,
    last_check_ok BOOLEAN,
    last_check_message TEXT,
    -- Reverse check: the nonce asked for, and when the connector's signed call arrived.
    callback_nonce TEXT,
    callback_verified_at BIGINT,
    -- Last day whose usage was collected.
    usage_collected_on TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX connector_instances_owner_service ON connector_instances (owner_account_id, service);

-- Transaction ids / nonces of connector → Cascade calls already accepted (replays refused).
CREATE TABLE connector_nonces (
    instance_id BIGINT NOT NULL REFERENCES connector_instances (id),
    nonce TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, nonce)
);

-- Counter readings per day, so a day's growth is computed again identically.
CREATE TABLE connector_counter_readings (
    instance_id BIGINT NOT NULL REFERENCES connector_instances (id),
    resource_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    reading_date TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (instance_id, resource_id, resource_type, reading_date)
);
