-- Software inventory (issue 8): one row per (device, package name, version), so an agent's
-- report is an upsert and an upgrade leaves the old version behind as inactive history.
-- NULLS NOT DISTINCT: a package without a version is still one row, not one per report.
-- first_seen: when this package/version first appeared on the device (the plan only has
-- last_seen); inventory_reported_at on the device: when the agent last sent a full list.
ALTER TABLE agent_software_inventory
    ADD COLUMN first_seen TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP;

CREATE UNIQUE INDEX uq_software_inventory_item
    ON agent_software_inventory (agent_device_id, software_name, software_version) NULLS NOT DISTINCT;

ALTER TABLE agent_devices
    ADD COLUMN inventory_reported_at TIMESTAMPTZ;
