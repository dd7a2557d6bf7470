-- The audit log of staff actions (docs/security.md): who did what to which object, when, and the
-- object before and after. Append-only: rows are written in the transaction of the change itself
-- (audit/service.py), and triggers refuse UPDATE, DELETE and TRUNCATE for everyone, the API
-- included; a DBA who must prune it drops the trigger knowingly.
CREATE TABLE audit_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_type   TEXT NOT NULL CHECK (actor_type IN ('user', 'agent', 'system', 'cli')),
    actor_user_id UUID,          -- no FK: a portal user deleted later must not erase the record
    actor_role   TEXT,
    action       TEXT NOT NULL,  -- <object>.<verb>, e.g. alert_rule.update, agent_token.rotate
    object_type  TEXT NOT NULL,
    object_id    TEXT,
    business_id  UUID,           -- NULL: fleet-wide (tiers, retention)
    before       JSONB,
    after        JSONB,
    detail       JSONB
);
CREATE INDEX idx_audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX idx_audit_log_object ON audit_log (object_type, object_id, at DESC);
CREATE INDEX idx_audit_log_business ON audit_log (business_id, at DESC) WHERE business_id IS NOT NULL;
CREATE INDEX idx_audit_log_actor ON audit_log (actor_user_id, at DESC) WHERE actor_user_id IS NOT NULL;

CREATE FUNCTION rts_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION rts_audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION rts_audit_log_append_only();
