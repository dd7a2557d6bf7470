-- The console's command views (device page, /console/commands) follow a command live: its
-- creation, approval, each status change and its output are announced on rts_console, like
-- alerts and status changes (0090), from a trigger so every path (the API, the agent's result
-- over HTTP or the WebSocket, the timeout sweep, a DBA's SQL) is heard, in the change's own
-- transaction. The payload names the command and its status only: a page re-reads the command
-- through the API (tenancy there), never takes output from a notification (8,000-byte limit).
CREATE FUNCTION rts_console_command_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rts_console', json_build_object(
        'kind', 'command', 'id', NEW.id, 'agent', NEW.agent_device_id,
        'business', (SELECT business_id FROM agent_devices WHERE id = NEW.agent_device_id),
        'status', NEW.status, 'created', TG_OP = 'INSERT')::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER agent_commands_console_created
    AFTER INSERT ON agent_commands
    FOR EACH ROW EXECUTE FUNCTION rts_console_command_changed();

CREATE TRIGGER agent_commands_console_changed
    AFTER UPDATE ON agent_commands
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.approved_at IS DISTINCT FROM NEW.approved_at
          OR OLD.result_received_at IS DISTINCT FROM NEW.result_received_at)
    EXECUTE FUNCTION rts_console_command_changed();
