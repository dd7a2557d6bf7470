-- One-time registration tokens (issue 3). The token itself (`AGT-` + 256 bits) is shown once at
-- creation; only its SHA-256 is stored. Single use is enforced by one conditional UPDATE
-- (`used_at IS NULL AND revoked_at IS NULL AND expires_at > now()`), so two concurrent
-- registrations with one token serialise on the row lock and exactly one succeeds.
CREATE TABLE agent_registration_tokens (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash          VARCHAR(64)  NOT NULL UNIQUE,
    -- The first characters (`AGT-xxxx`) so an operator can tell tokens apart in a list.
    token_hint          VARCHAR(16)  NOT NULL,
    business_id         UUID         NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    service_location_id UUID         REFERENCES service_locations(id) ON DELETE SET NULL,
    device_name         VARCHAR(255),
    -- The portal user (JWT `sub`); no foreign key: the portal's user may live in another database.
    created_by          UUID,
    created_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    expires_at          TIMESTAMPTZ  NOT NULL,
    used_at             TIMESTAMPTZ,
    used_by_agent_id    UUID         REFERENCES agent_devices(id) ON DELETE SET NULL,
    revoked_at          TIMESTAMPTZ,
    revoked_by          UUID,
    CHECK (expires_at > created_at)
);

CREATE INDEX idx_agent_registration_tokens_business
    ON agent_registration_tokens (business_id, created_at DESC);
