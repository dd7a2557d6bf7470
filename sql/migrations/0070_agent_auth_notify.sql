-- Every API process caches agent-token lookups (auth/agents.py). When a token stops being valid
-- (revoked, rotated, device deleted) this trigger tells every process at once, in the same
-- transaction as the change, whatever path made it: the API, a DBA's UPDATE, a migration.
CREATE FUNCTION rts_agent_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rts_agent_auth', OLD.agent_token_hash);
    RETURN NULL;
END
$$;

CREATE TRIGGER agent_devices_auth_changed
    AFTER UPDATE OF agent_token_hash, agent_token_revoked_at, soft_delete ON agent_devices
    FOR EACH ROW
    WHEN (OLD.agent_token_hash IS NOT NULL AND (
          NEW.agent_token_hash IS DISTINCT FROM OLD.agent_token_hash
       OR (NEW.agent_token_revoked_at IS NOT NULL AND OLD.agent_token_revoked_at IS NULL)
       OR (NEW.soft_delete AND NOT OLD.soft_delete)))
    EXECUTE FUNCTION rts_agent_auth_changed();

CREATE TRIGGER agent_devices_auth_deleted
    AFTER DELETE ON agent_devices
    FOR EACH ROW
    WHEN (OLD.agent_token_hash IS NOT NULL)
    EXECUTE FUNCTION rts_agent_auth_changed();
