-- Partitions of the raw table and the tiers on plain PostgreSQL (the postgres edition), made by
-- the project because there is no TimescaleDB to make chunks:
--
-- * rts_partitions(level): every partition of a level with its bounds (NULL for the DEFAULT one),
--   read from the catalog (pg_get_expr prints the bounds in this session's time zone and casting
--   them back in the same session is exact), so a DBA's own DROP or ATTACH is always seen.
-- * rts_partition_create(level, at): the partition holding `at`, width from rts_tier_levels,
--   aligned like time_bucket (origin Monday 2000-01-03), clipped to its neighbours when the width
--   changed. Rows of its range waiting in the DEFAULT partition move into it in the same
--   transaction. Built as a plain table and ATTACHed: ATTACH locks the parent SHARE UPDATE
--   EXCLUSIVE, so ingestion into the other partitions goes on meanwhile.
-- * rts_partitions_maintain(ahead): the partitions from now to now + ahead for every level, and one
--   for every row waiting in a DEFAULT partition (a late spool, a backfill): what the partitions
--   job (tiers.partitions) runs.
-- * rts_partitions_drop(level, cutoff): retention; drops every partition wholly before cutoff.

CREATE OR REPLACE FUNCTION rts_partition_column(level text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN level = 'agent_metrics' THEN 'collected_at' ELSE 'bucket' END $$;

CREATE OR REPLACE FUNCTION rts_partitions(level text)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz, bytes bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$FROM \('([^']*)'\)$re$)::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$TO \('([^']*)'\)$re$)::timestamptz,
           pg_total_relation_size(c.oid)
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = to_regclass(level)
$$;

CREATE OR REPLACE FUNCTION rts_partition_create(level text, at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    width interval;
    col text := rts_partition_column(level);
    def text := level || '_default';
    lo timestamptz;
    hi timestamptz;
    part text;
BEGIN
    SELECT l.partition_interval INTO width FROM rts_tier_levels l WHERE l.name = level;
    IF width IS NULL THEN
        RAISE EXCEPTION 'rts_partition_create: % is not a partitioned level', level;
    END IF;
    -- One creator per level at a time (the job on several API processes, a DBA by hand).
    PERFORM pg_advisory_xact_lock(hashtext('rts_partitions:' || level));
    IF EXISTS (SELECT 1 FROM rts_partitions(level) p WHERE p.range_start <= at AND at < p.range_end) THEN
        RETURN NULL;
    END IF;
    lo := date_bin(width, at, TIMESTAMPTZ '2000-01-03 00:00:00+00');
    hi := lo + width;
    SELECT greatest(lo, coalesce(max(p.range_end), lo)) INTO lo FROM rts_partitions(level) p WHERE p.range_end <= at;
    SELECT least(hi, coalesce(min(p.range_start), hi)) INTO hi FROM rts_partitions(level) p WHERE p.range_start > at;
    part := level || '_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD')
            || CASE WHEN (lo AT TIME ZONE 'UTC')::time <> TIME '00:00' THEN to_char(lo AT TIME ZONE 'UTC', '"_"HH24MI')
                    ELSE '' END;
    -- No insert into the DEFAULT partition between moving its rows out and the ATTACH's check.
    EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', def);
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, level);
    -- A constraint proving the bounds lets ATTACH skip scanning the new table.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%I >= %L AND %I < %L)',
                   part, part || '_bounds', col, lo, col, hi);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved', def, col, lo, col, hi, part);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', level, part, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bounds');
    RETURN part;
END
$$;

CREATE OR REPLACE FUNCTION rts_partitions_maintain(ahead interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    lvl record;
    t timestamptz;
    oldest timestamptz;
    made integer := 0;
BEGIN
    FOR lvl IN SELECT name, partition_interval AS width FROM rts_tier_levels
                WHERE partition_interval IS NOT NULL ORDER BY position LOOP
        t := now();
        WHILE t < now() + ahead + lvl.width LOOP
            IF rts_partition_create(lvl.name, t) IS NOT NULL THEN
                made := made + 1;
            END IF;
            t := t + lvl.width;
        END LOOP;
        LOOP  -- the oldest row waiting in the DEFAULT partition gets its partition, until none waits
            EXECUTE format('SELECT min(%I) FROM %I', rts_partition_column(lvl.name), lvl.name || '_default')
               INTO oldest;
            EXIT WHEN oldest IS NULL;
            EXIT WHEN rts_partition_create(lvl.name, oldest) IS NULL;
            made := made + 1;
        END LOOP;
    END LOOP;
    RETURN made;
END
$$;

CREATE OR REPLACE FUNCTION rts_partitions_drop(level text, cutoff timestamptz)
RETURNS TABLE (partition_name text, range_end timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    p record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rts_partitions:' || level));
    FOR p IN SELECT x.partition_name, x.range_end FROM rts_partitions(level) x
              WHERE x.range_end IS NOT NULL AND x.range_end <= cutoff ORDER BY x.range_start LOOP
        EXECUTE format('DROP TABLE %I', p.partition_name);
        partition_name := p.partition_name;
        range_end := p.range_end;
        RETURN NEXT;
    END LOOP;
END
$$;
