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
UPDATE agent_devices SET inventory_reported_at = now() WHERE id = %(device_id)s

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
