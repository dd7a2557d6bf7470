-- Agent token rotation (auth/rotation.py): the token in use, when it was issued, the one it
-- replaced and until when that one still works (the grace period, so requests already on their
-- way and an agent that has not yet saved the new token are not cut off), and whether a new
-- token is due (requested by staff or by the age job) and acknowledged by the agent.
ALTER TABLE agent_devices
    ADD COLUMN agent_token_issued_at TIMESTAMPTZ,
    ADD COLUMN agent_token_previous_hash VARCHAR(64),
    ADD COLUMN agent_token_previous_expires_at TIMESTAMPTZ,
    ADD COLUMN agent_token_rotate_requested_at TIMESTAMPTZ,
    ADD COLUMN agent_token_acked_at TIMESTAMPTZ;

-- Existing tokens were issued when their device enrolled.
UPDATE agent_devices SET agent_token_issued_at = coalesce(created_at, now()) WHERE agent_token_hash IS NOT NULL;
ALTER TABLE agent_devices ALTER COLUMN agent_token_issued_at SET DEFAULT now();

CREATE UNIQUE INDEX idx_agent_devices_previous_token ON agent_devices (agent_token_previous_hash)
    WHERE agent_token_previous_hash IS NOT NULL;
CREATE INDEX idx_agent_devices_token_issued ON agent_devices (agent_token_issued_at)
    WHERE agent_token_hash IS NOT NULL AND agent_token_rotate_requested_at IS NULL;

-- The cache eviction of 0070 also covers the previous token: rotated out, revoked, deleted.
CREATE OR REPLACE FUNCTION rts_agent_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.agent_token_hash IS NOT NULL THEN
        PERFORM pg_notify('rts_agent_auth', OLD.agent_token_hash);
    END IF;
    IF OLD.agent_token_previous_hash IS NOT NULL THEN
        PERFORM pg_notify('rts_agent_auth', OLD.agent_token_previous_hash);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER agent_devices_auth_changed ON agent_devices;
CREATE TRIGGER agent_devices_auth_changed
    AFTER UPDATE OF agent_token_hash, agent_token_previous_hash, agent_token_revoked_at, soft_delete
    ON agent_devices
    FOR EACH ROW
    WHEN ((OLD.agent_token_hash IS NOT NULL OR OLD.agent_token_previous_hash IS NOT NULL) AND (
          NEW.agent_token_hash IS DISTINCT FROM OLD.agent_token_hash
       OR NEW.agent_token_previous_hash IS DISTINCT FROM OLD.agent_token_previous_hash
       OR (NEW.agent_token_revoked_at IS NOT NULL AND OLD.agent_token_revoked_at IS NULL)
       OR (NEW.soft_delete AND NOT OLD.soft_delete)))
    EXECUTE FUNCTION rts_agent_auth_changed();

DROP TRIGGER agent_devices_auth_deleted ON agent_devices;
CREATE TRIGGER agent_devices_auth_deleted
    AFTER DELETE ON agent_devices
    FOR EACH ROW
    WHEN (OLD.agent_token_hash IS NOT NULL OR OLD.agent_token_previous_hash IS NOT NULL)
    EXECUTE FUNCTION rts_agent_auth_changed();
