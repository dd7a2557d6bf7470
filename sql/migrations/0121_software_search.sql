-- Fleet software search (inventory/search.py): which package manager a device's inventory came
-- from decides how its versions are ordered (dpkg, rpm, ...), and names are looked up
-- case-insensitively across the fleet.
ALTER TABLE agent_devices ADD COLUMN inventory_source VARCHAR(50);
CREATE INDEX idx_software_inventory_name ON agent_software_inventory (lower(software_name)) WHERE is_active;
