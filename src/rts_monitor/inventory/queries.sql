-- name: lock_device
-- Serialises concurrent reports of one device (the deactivate step relies on it) and checks
-- that the device still exists.
SELECT id FROM agent_devices WHERE id = %(device_id)s AND soft_delete = false FOR UPDATE

-- name: upsert_items
-- Every reported package becomes (or stays) active with last_seen = now(): the transaction's
-- start time, which the deactivate step uses to tell "seen in this report" from "not seen".
INSERT INTO agent_software_inventory AS s (
    agent_device_id, software_name, software_version, vendor, install_date, software_type,
    is_security_software, is_active, last_seen, first_seen)
SELECT %(device_id)s, t.software_name, t.software_version, t.vendor, t.install_date, t.software_type,
       t.is_security_software, true, now(), now()
  FROM unnest(%(names)s::text[], %(versions)s::text[], %(vendors)s::text[], %(install_dates)s::date[],
              %(types)s::text[], %(security)s::bool[])
       AS t(software_name, software_version, vendor, install_date, software_type, is_security_software)
ON CONFLICT (agent_device_id, software_name, software_version) DO UPDATE
   SET vendor = EXCLUDED.vendor,
       install_date = coalesce(EXCLUDED.install_date, s.install_date),
       software_type = coalesce(EXCLUDED.software_type, s.software_type),
       is_security_software = EXCLUDED.is_security_software,
       is_active = true,
       last_seen = now()
RETURNING (xmax = 0) AS inserted

-- name: deactivate_missing
-- Active rows this report did not touch: the software is no longer installed.
UPDATE agent_software_inventory
   SET is_active = false
 WHERE agent_device_id = %(device_id)s
   AND is_active
   AND last_seen < now()

-- name: mark_reported
UPDATE agent_devices SET inventory_reported_at = now(), inventory_source = %(source)s WHERE id = %(device_id)s

-- name: count_active
SELECT count(*) AS n FROM agent_software_inventory WHERE agent_device_id = %(device_id)s AND is_active

-- name: visible_device
-- Tenancy: another business's device is "not found".
SELECT id, inventory_reported_at
  FROM agent_devices
 WHERE id = %(device_id)s
   AND soft_delete = false
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: list_for_device
SELECT software_name AS name, software_version AS version, vendor, install_date, software_type,
       coalesce(is_security_software, false) AS is_security_software, coalesce(is_active, false) AS is_active,
       first_seen, last_seen
  FROM agent_software_inventory
 WHERE agent_device_id = %(device_id)s
   AND (is_active OR %(include_inactive)s)
 ORDER BY software_name, is_active DESC, last_seen DESC, software_version

-- name: fleet_software
-- Active packages of that name (``%%`` wildcards allowed, case-insensitive) on the devices the
-- caller may see; versions are compared afterwards, per device's package manager (search.py).
SELECT d.id AS agent_id, d.device_name, d.hostname, d.os_type, d.inventory_source, d.business_id, b.business_name,
       d.service_location_id, l.location_name, s.software_name AS name, s.software_version AS version, s.vendor,
       s.last_seen
  FROM agent_software_inventory s
  JOIN agent_devices d ON d.id = s.agent_device_id
  JOIN businesses b ON b.id = d.business_id
  LEFT JOIN service_locations l ON l.id = d.service_location_id
 WHERE s.is_active AND NOT d.soft_delete
   AND lower(s.software_name) LIKE lower(%(name)s) ESCAPE '\'
   AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR d.business_id = %(business_id)s::uuid)
 ORDER BY b.business_name, d.device_name, d.id, s.software_name, s.software_version
 LIMIT %(limit)s

-- name: agent_versions
SELECT d.id AS agent_id, d.device_name, d.hostname, d.business_id, b.business_name, d.agent_version, d.status,
       d.last_heartbeat
  FROM agent_devices d
  JOIN businesses b ON b.id = d.business_id
 WHERE NOT d.soft_delete
   AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR d.business_id = %(business_id)s::uuid)
 ORDER BY b.business_name, d.device_name, d.id
