-- Which services are watched, chosen in the portal (docs/services.md): per device, and as a
-- business-wide default optionally limited to one OS type. The effective list of a device is its
-- own entries plus the defaults of its business for its OS (the device's entry wins for a name),
-- materialised into agent_monitored_services (configured, should_be_running, auto_restart): the
-- service_down rule and the agent's config read that one table.
CREATE TABLE business_monitored_services (
    business_id       UUID NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    -- '' = every OS; else agent_devices.os_type, compared case-insensitively
    os_type           VARCHAR(50) NOT NULL DEFAULT '',
    service_name      VARCHAR(255) NOT NULL,
    should_be_running BOOLEAN NOT NULL DEFAULT true,
    auto_restart      BOOLEAN NOT NULL DEFAULT false,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, os_type, service_name)
);

CREATE TABLE device_monitored_services (
    agent_device_id   UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,
    service_name      VARCHAR(255) NOT NULL,
    should_be_running BOOLEAN NOT NULL DEFAULT true,
    auto_restart      BOOLEAN NOT NULL DEFAULT false,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_device_id, service_name)
);

-- true while the service is in the device's effective list; rows the agent reports on its own
-- (its --services pin) stay false.
ALTER TABLE agent_monitored_services ADD COLUMN configured BOOLEAN NOT NULL DEFAULT false;
