-- name: begin_full_cycle
-- A full cycle excludes other cycles and the ingest hooks (transaction advisory lock). Planner:
-- the evaluate statement joins CTEs whose row estimates are guesses; with nested loops allowed a
-- bad guess turns a join of thousands of rows into a quadratic scan (measured: 5 s instead of
-- 0.1 s at 1,000 devices). Its per-device index probes are LATERAL, so they stay nested loops.
-- JIT off: the disabled-path costs would otherwise trigger seconds of JIT compilation.
-- A generic plan: the statement is prepared once per connection (evaluator.py) and planning it
-- costs more than running it for a few devices (measured: a one-device hook 87 ms with a generic
-- plan, 251 ms planned each time, on a loaded machine); its joins do not depend on the values.
SELECT pg_advisory_xact_lock(%(key)s), set_config('enable_nestloop', 'off', true), set_config('jit', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true)

-- name: begin_device_cycle
-- An ingest hook only shares the lock: hooks run side by side, and wait at most for one cycle.
SELECT pg_advisory_xact_lock_shared(%(key)s), set_config('enable_nestloop', 'off', true),
       set_config('jit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)

-- name: lock_devices
-- An ingest hook judges the instants of its devices after the ones before it: two hooks for the
-- same device (two flushes close together) take turns, so neither judges an instant twice. Taken
-- before the evaluate statement, whose snapshot then sees the other hook's outcome.
SELECT count(pg_advisory_xact_lock(%(key)s, k)) AS n
  FROM (SELECT DISTINCT hashtext(d::text) AS k FROM unnest(%(devices)s::uuid[]) d ORDER BY 1) x

-- name: evaluate
-- A periodic cycle: every active rule of the given kinds over every (rule, device) pair, or
-- (%(incremental)s) the metric pairs of the devices whose inputs changed since they were last
-- judged plus the agent_offline/service_down pairs (driven by the wall clock). One statement, so
-- it sees one snapshot and commits atomically: open episodes, auto-resolve cleared ones, bump rule
-- counters, enqueue outbox work, and record what it judged (alert_device_cursors,
-- alert_business_seen). Metric rules are judged in data time (eval_metric).
WITH
-- include: eval_rules
fingerprints AS MATERIALIZED (
    -- Periodic cycles: per business, what its rules and the maintenance windows that can still
    -- cover an instant say (not their counters, which evaluation itself bumps). Any edit that
    -- changes a judgement (create, conditions, scope, enable, delete) changes it.
    SELECT x.business_id, md5(string_agg(x.v, ',' ORDER BY x.v)) AS fp
      FROM (SELECT a.business_id, concat_ws('|', 'r', a.id, a.agent_device_id, a.is_active, a.soft_delete,
                                            a.conditions) AS v
              FROM agent_alerts a
            UNION ALL
            SELECT w.business_id, concat_ws('|', 'm', w.id, w.service_location_id, w.agent_device_id, w.starts_at,
                                            w.ends_at)
              FROM alert_maintenance_windows w
             WHERE w.ends_at > now() - %(stale)s::interval) x
     GROUP BY x.business_id
),
changed AS MATERIALIZED (
    SELECT coalesce(f.business_id, s.business_id) AS business_id, f.fp
      FROM fingerprints f
      FULL JOIN alert_business_seen s ON s.business_id = f.business_id
     WHERE f.fp IS DISTINCT FROM s.fingerprint
),
-- include: eval_metric
-- include: eval_clock
judged AS (
    SELECT * FROM metric_judged
    UNION ALL
    SELECT * FROM clock_judged
),
seen AS (
    INSERT INTO alert_business_seen AS s (business_id, fingerprint)
    SELECT business_id, fp FROM changed WHERE fp IS NOT NULL
    ON CONFLICT (business_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
    RETURNING 1
),
unseen AS (
    DELETE FROM alert_business_seen s USING changed c WHERE c.fp IS NULL AND s.business_id = c.business_id
    RETURNING 1
),
-- include: eval_apply

-- name: evaluate_devices
-- The ingest hook: the metric rules of just the devices of a flush (%(devices)s), the same
-- judgement and outcome as a cycle's (eval_metric, eval_apply), without the parts only a periodic
-- cycle needs (fingerprints, wall-clock rules): less to plan and run on the ingest path.
WITH
-- include: eval_rules
changed AS (
    SELECT NULL::uuid AS business_id WHERE false
),
-- include: eval_metric
judged AS (
    SELECT * FROM metric_judged
),
-- include: eval_apply

-- name: evaluate_device_clock
-- A crash event (events/service.py): the rules of %(kinds)s (service_down) of one device, judged
-- now as a periodic cycle judges them (eval_clock), the outcome applied the same way
-- (eval_apply). Shares the hooks' locks, so it waits at most for one cycle and takes turns with
-- the device's hooks. Its metric rules, if asked for, are judged like a hook's.
WITH
-- include: eval_rules
changed AS (
    SELECT NULL::uuid AS business_id WHERE false
),
-- include: eval_metric
-- include: eval_clock
judged AS (
    SELECT * FROM metric_judged
    UNION ALL
    SELECT * FROM clock_judged
),
-- include: eval_apply

-- name: eval_clock
-- (fragment) The wall-clock part of an evaluation, after eval_metric: the agent_offline and
-- service_down pairs that can change something now, judged now (clock_judged).
down AS MATERIALIZED (
    -- Monitored services that should run and do not, with since when, and whether
    -- auto-remediation restarts them (auto_restart on a remediation-enabled device).
    SELECT s.agent_device_id AS device_id, s.service_name, coalesce(s.last_state_change, s.last_checked) AS since,
           coalesce(s.auto_restart, false) AND coalesce(dv.auto_remediation_enabled, false) AS remedied
      FROM agent_monitored_services s
      JOIN agent_devices dv ON dv.id = s.agent_device_id
     WHERE s.should_be_running AND coalesce(s.status, 'unknown') <> 'running'
       AND s.agent_device_id IN (SELECT id FROM devices)
),
concerned AS MATERIALIZED (
    -- The devices whose agent_offline or service_down rules can change something now: silent,
    -- a service down, or an episode open that may clear.
    SELECT d.id, d.business_id, d.heard_at FROM devices d
     WHERE d.eligible
       AND (d.heard_at <= now() - (SELECT min(win) FROM rules WHERE kind = 'agent_offline')
            OR d.id IN (SELECT device_id FROM down) OR d.id IN (SELECT agent_device_id FROM open_now))
),
clock AS MATERIALIZED (
    -- Their agent_offline and service_down pairs that can change something, judged now (not
    -- every quiet pair of the fleet).
    SELECT p.rule_id, p.device_id, p.kind, p.win, p.heard_at
      FROM (SELECT r.id AS rule_id, d.id AS device_id, r.kind, r.win, d.heard_at
              FROM concerned d JOIN rules r ON r.business_id = d.business_id AND r.agent_device_id = d.id
             WHERE r.kind <> 'metric'
            UNION ALL
            SELECT r.id, d.id, r.kind, r.win, d.heard_at
              FROM concerned d JOIN rules r ON r.business_id = d.business_id AND r.agent_device_id IS NULL
             WHERE r.kind <> 'metric') p
     WHERE (p.kind = 'agent_offline' AND p.heard_at <= now() - p.win)
        OR (p.kind = 'service_down' AND p.device_id IN (SELECT device_id FROM down))
        OR (p.rule_id, p.device_id) IN (SELECT agent_alert_id, agent_device_id FROM open_now)
),
sagg AS (
    -- A rule has one window: grouping by it too keeps this to PostgreSQL 15 (no any_value before 16).
    SELECT c.rule_id, c.device_id, c.win,
           count(s.device_id) AS down_any,
           -- A service auto-remediation restarts escalates only once it stayed down for the grace
           -- period as well (docs/services.md): the restart gets its chance first.
           count(s.device_id) FILTER (WHERE s.since <= now() - c.win AND (NOT s.remedied
                                             OR s.since <= now() - %(remediation_grace)s::interval)) AS down_long,
           string_agg(s.service_name, ', ' ORDER BY s.service_name)
               FILTER (WHERE s.since <= now() - c.win AND (NOT s.remedied
                                OR s.since <= now() - %(remediation_grace)s::interval)) AS names,
           min(s.since) AS since
      FROM clock c
      JOIN rules r ON r.id = c.rule_id
      LEFT JOIN down s ON s.device_id = c.device_id AND (r.service_name IS NULL OR s.service_name = r.service_name)
     WHERE c.kind = 'service_down'
     GROUP BY c.rule_id, c.device_id, c.win
),
maintained AS (
    -- devices a maintenance window covers now (for the rules judged now)
    SELECT d.id FROM devices d
     WHERE EXISTS (SELECT 1 FROM alert_maintenance_windows w
                    WHERE w.business_id = d.business_id AND w.starts_at <= now() AND w.ends_at > now()
                      AND (w.service_location_id IS NULL OR w.service_location_id = d.service_location_id)
                      AND (w.agent_device_id IS NULL OR w.agent_device_id = d.id))
       AND d.id IN (SELECT device_id FROM clock)
),
clock_judged AS (
    -- The agent_offline and service_down pairs, each with one instant, now (and a maintenance
    -- window covering now).
    SELECT c.rule_id, c.device_id, now(), 'agent_offline',
           round((extract(epoch FROM now() - c.heard_at) / 60)::numeric, 1)::float8,
           extract(epoch FROM c.win)::float8 / 60, c.win, c.heard_at, NULL,
           CASE WHEN c.heard_at <= now() - c.win AND c.device_id NOT IN (SELECT id FROM maintained)
                     AND (m.resolved_at IS NULL OR c.heard_at > m.resolved_at) THEN 'B'
                WHEN c.heard_at > now() - c.win THEN 'C' END
      FROM clock c
      LEFT JOIN manual m ON m.agent_alert_id = c.rule_id AND m.agent_device_id = c.device_id
     WHERE c.kind = 'agent_offline'
    UNION ALL
    SELECT a.rule_id, a.device_id, now(), 'service_down', a.down_long::float8, extract(epoch FROM a.win)::float8 / 60,
           a.win, a.since, a.names,
           CASE WHEN a.down_long > 0 AND a.device_id NOT IN (SELECT id FROM maintained)
                     AND (m.resolved_at IS NULL OR a.since > m.resolved_at) THEN 'B'
                WHEN a.down_any = 0 THEN 'C' END
      FROM sagg a
      LEFT JOIN manual m ON m.agent_alert_id = a.rule_id AND m.agent_device_id = a.device_id
),

-- name: eval_rules
-- (fragment) The active rules an evaluation judges, with their hysteresis and window.
rules AS MATERIALIZED (
    SELECT r.id, r.business_id, r.agent_device_id, r.severity, r.kind, r.metric, r.operator, r.threshold,
           r.aggregation, r.service_name,
           coalesce(r.hysteresis, abs(r.threshold) * %(hyst_pct)s / 100.0) AS hyst,
           make_interval(mins => r.duration_minutes) AS win
      FROM agent_alerts r
     WHERE r.is_active AND NOT r.soft_delete AND r.kind = ANY(%(kinds)s::text[])
),

-- name: eval_metric
-- (fragment) The metric part of an evaluation, after ``rules`` and ``changed``: the devices and
-- whether they are due, the metric pairs, each device's instants and samples, their verdicts
-- (metric_windows) and events (metric_judged). Metric rules are judged in data time, at every
-- sample time ("instant") of the device after the last judged one, and at its newest sample
-- again. Instants older than %(stale)s are not judged.
devices AS MATERIALIZED (
    SELECT d.id, d.business_id, d.service_location_id, coalesce(d.last_heartbeat, d.created_at) AS heard_at,
           e.eligible, d.last_metrics_received AS lmr, c.evaluated_through,
           -- the inputs of its metric rules changed since they were last judged (or never were)
           c.agent_device_id IS NULL OR c.metrics_seen IS DISTINCT FROM d.last_metrics_received
             OR c.business_id IS DISTINCT FROM d.business_id
             OR c.service_location_id IS DISTINCT FROM d.service_location_id
             OR c.eligible IS DISTINCT FROM e.eligible
             OR d.business_id IN (SELECT business_id FROM changed) AS changed
      FROM agent_devices d
      LEFT JOIN alert_device_cursors c ON c.agent_device_id = d.id
     CROSS JOIN LATERAL (SELECT coalesce(d.alerts_enabled AND d.monitoring_enabled AND d.is_active
                                         AND NOT d.soft_delete, false) AS eligible) e
     WHERE (%(devices)s::uuid[] IS NULL OR d.id = ANY(%(devices)s::uuid[]))
       AND d.business_id IN (SELECT business_id FROM rules)
),
pairs AS MATERIALIZED (
    -- The metric pairs to judge: which metric rule watches which due device.
    SELECT r.id AS rule_id, r.win, d.id AS device_id, d.evaluated_through
      FROM rules r JOIN devices d ON d.id = r.agent_device_id AND d.business_id = r.business_id
     WHERE r.kind = 'metric' AND d.eligible AND (d.changed OR NOT %(incremental)s)
    UNION ALL
    SELECT r.id, r.win, d.id, d.evaluated_through
      FROM rules r JOIN devices d ON r.agent_device_id IS NULL AND d.business_id = r.business_id
     WHERE r.kind = 'metric' AND d.eligible AND (d.changed OR NOT %(incremental)s)
),
mdev AS MATERIALIZED (
    SELECT device_id, max(win) AS win, min(evaluated_through) AS evaluated_through
      FROM pairs GROUP BY device_id
),
latest AS MATERIALIZED (
    -- Each device's newest sample: one backward probe of the primary key (LATERAL LIMIT 1).
    SELECT mdev.device_id, mdev.win, mdev.evaluated_through, lm.collected_at AS latest
      FROM mdev
     CROSS JOIN LATERAL (SELECT m.collected_at FROM agent_metrics m
                          WHERE m.agent_device_id = mdev.device_id AND m.collected_at >= now() - %(stale)s::interval
                          ORDER BY m.collected_at DESC LIMIT 1) lm
),
wfetched AS MATERIALIZED (
    -- Each device's rows from its first instant's longest window on, by one range probe of the
    -- primary key (LATERAL, OFFSET 0: never flattened into a join over a chunk scan). The
    -- instants: sample times after the last judged one (not stale), and the newest one again
    -- (a late sample re-judges it). A device never judged (no cursor) starts at its newest.
    SELECT l.device_id, 0 AS part, m.collected_at,
           lag(m.collected_at) OVER (PARTITION BY l.device_id ORDER BY m.collected_at) AS prev_at,
           m.collected_at = l.latest OR (m.collected_at > l.evaluated_through
                                         AND m.collected_at >= now() - %(stale)s::interval) AS instant,
           m.cpu_percent, m.memory_used_gb, m.memory_percent, m.disk_used_gb, m.disk_percent,
           m.load_average_1m, m.load_average_5m, m.load_average_15m, m.uptime_seconds,
           m.network_rx_bytes, m.network_tx_bytes
      FROM latest l
     CROSS JOIN LATERAL (
        SELECT * FROM agent_metric_values m
         WHERE m.agent_device_id = l.device_id
           AND m.collected_at >= least(l.latest, greatest(coalesce(l.evaluated_through, l.latest),
                                                          now() - %(stale)s::interval))
                                 - l.win - %(slack)s::interval
           AND m.collected_at <= l.latest
           -- a constant bound for chunk exclusion; never binds (every instant is within %(stale)s)
           AND m.collected_at >= now() - %(stale)s::interval - %(max_window)s::interval - %(slack)s::interval
        OFFSET 0) m
),
winstants AS (
    SELECT device_id, part, collected_at AS t FROM wfetched WHERE instant
),
wpairs AS (
    SELECT p.rule_id, p.device_id, d.business_id, d.service_location_id, r.metric, r.win, r.operator,
           r.threshold, r.hyst, r.aggregation
      FROM pairs p
      JOIN latest l ON l.device_id = p.device_id
      JOIN rules r ON r.id = p.rule_id
      JOIN devices d ON d.id = p.device_id
),
-- include: metric_windows
open_now AS MATERIALIZED (
    SELECT h.id, h.agent_alert_id, h.agent_device_id
      FROM agent_alert_history h
     WHERE h.status IN ('active', 'acknowledged')
),
manual AS MATERIALIZED (
    -- A person's resolve holds while the evidence that opened it lasts: a new episode needs an
    -- evidence window starting after it. The horizon reaches every instant still judged.
    SELECT agent_alert_id, agent_device_id, max(resolved_at) AS resolved_at
      FROM agent_alert_history
     WHERE status = 'resolved'
       AND resolved_at > now() - greatest(interval '2 days', %(stale)s::interval + %(max_window)s::interval
                                                             + %(slack)s::interval)
     GROUP BY agent_alert_id, agent_device_id
),
metric_judged AS (
    -- Every instant of every metric pair: breach ('B', when no maintenance window covers the
    -- instant and no manual resolve holds) or clear ('C').
    SELECT v.rule_id, v.device_id, v.t, 'metric' AS kind, v.agg AS value, v.threshold, v.win,
           v.t - v.win AS since, NULL::text AS names,
           CASE WHEN v.breach AND NOT v.in_maintenance AND (m.resolved_at IS NULL OR v.t - v.win > m.resolved_at)
                THEN 'B' WHEN v.clear THEN 'C' END AS ev
      FROM wverdicts v
      LEFT JOIN manual m ON m.agent_alert_id = v.rule_id AND m.agent_device_id = v.device_id
),

-- name: eval_apply
-- (fragment) The outcome of an evaluation, after ``judged``: transitions (episode_transitions),
-- resolves, openings, rule counters, outbox work, the devices' cursors; the rows evaluator.py reads.
wevents AS (
    -- Only events that can change a state: a clear of a pair with nothing open and no breach in
    -- this cycle is a no-op (for the single-instant kinds that is every clear of a closed pair).
    SELECT j.*, o.id IS NOT NULL AS initially_open, o.id AS open_id
      FROM judged j
      LEFT JOIN open_now o ON o.agent_alert_id = j.rule_id AND o.agent_device_id = j.device_id
     WHERE j.ev = 'B' OR (j.ev = 'C' AND (o.id IS NOT NULL OR j.kind = 'metric'))
),
-- include: episode_transitions
resolved AS (
    -- The pair's open episode, when its first transition in this cycle is a clear.
    UPDATE agent_alert_history h
       SET status = 'auto_resolved', resolved_at = now(), cleared_at = x.t,
           resolution_notes = concat_ws(E'\n', h.resolution_notes, 'auto-resolved: condition cleared')
      FROM wtransitions x
     WHERE x.step = 'close' AND x.first AND h.id = x.open_id AND h.status IN ('active', 'acknowledged')
    RETURNING h.id, h.agent_alert_id, h.agent_device_id
),
opened AS (
    -- Every opening transition; one that also cleared in this cycle is stored resolved at once.
    -- The uncorrelated count makes the resolve above run first: the pair's old open episode is
    -- then out of the partial unique index when its successor goes in.
    INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message,
                                     metric_value, threshold_value, condition_since, status, triggered_at,
                                     detected_at, resolved_at, cleared_at, resolution_notes)
    SELECT x.rule_id, x.device_id, r.business_id, r.severity,
           CASE x.kind
             WHEN 'metric' THEN format('%%s on %%s: %%s(%%s) = %%s %%s %%s over %%s min', r.alert_name, d.device_name,
                                       r.aggregation, r.metric, round(x.value::numeric, 2), r.operator, x.threshold,
                                       extract(epoch FROM x.win)::int / 60)
             WHEN 'agent_offline' THEN format('%%s: device %%s has not sent a heartbeat for %%s min (last %%s)',
                                       r.alert_name, d.device_name, round(x.value::numeric), to_char(
                                       x.since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
             ELSE format('%%s on %%s: service(s) %%s not running for over %%s min', r.alert_name, d.device_name,
                         x.names, extract(epoch FROM x.win)::int / 60)
           END,
           -- a value of a real column is kept as the shortest decimal of that float (95.1, not
           -- 95.0999984741211): through real's text form, which is exactly that decimal
           CASE WHEN x.kind = 'metric' AND r.metric IN ('cpu_percent', 'memory_used_gb', 'memory_percent',
                     'disk_used_gb', 'disk_percent', 'load_average_1m', 'load_average_5m', 'load_average_15m')
                THEN x.value::real::text::float8 ELSE x.value END,
           x.threshold, x.since, CASE WHEN x.next_t IS NULL THEN 'active' ELSE 'auto_resolved' END, now(),
           x.t, CASE WHEN x.next_t IS NOT NULL THEN now() END, x.next_t,
           CASE WHEN x.next_t IS NOT NULL THEN 'auto-resolved: condition cleared' END
      FROM wtransitions x
      JOIN agent_alerts r ON r.id = x.rule_id
      JOIN agent_devices d ON d.id = x.device_id
     WHERE x.step = 'open' AND (SELECT count(*) FROM resolved) >= 0
     ORDER BY x.rule_id, x.device_id, x.t  -- one lock order for every evaluator: no deadlocks between them
    ON CONFLICT (agent_alert_id, agent_device_id) WHERE status IN ('active', 'acknowledged') DO NOTHING
    RETURNING id, agent_alert_id, agent_device_id, status
),
bumped AS (
    UPDATE agent_alerts r
       SET trigger_count = coalesce(r.trigger_count, 0) + c.n, last_triggered = now()
      FROM (SELECT agent_alert_id, count(*) AS n FROM opened GROUP BY agent_alert_id) c
     WHERE r.id = c.agent_alert_id
    RETURNING r.id
),
work AS (
    INSERT INTO alert_outbox (alert_history_id, channel, event)
    SELECT x.id, ch.channel, x.event
      FROM (SELECT id, agent_alert_id, 'opened' AS event FROM opened
            UNION ALL SELECT id, agent_alert_id, 'resolved' FROM opened WHERE status = 'auto_resolved'
            UNION ALL SELECT id, agent_alert_id, 'resolved' FROM resolved) x
      JOIN agent_alerts r ON r.id = x.agent_alert_id
      -- include: rule_followup_channels
    ON CONFLICT DO NOTHING
    RETURNING id
),
cursors AS (
    -- What this evaluation judged each due device with. evaluated_through never moves back: an
    -- older evaluation finishing late must not make a later one judge an instant twice. A device
    -- first seen without recent samples starts before them all ('-infinity').
    INSERT INTO alert_device_cursors AS c (agent_device_id, metrics_seen, evaluated_through, business_id,
                                           service_location_id, eligible, updated_at)
    SELECT d.id, d.lmr, coalesce(l.latest, d.evaluated_through, '-infinity'), d.business_id,
           d.service_location_id, d.eligible, now()
      FROM devices d
      LEFT JOIN latest l ON l.device_id = d.id
     WHERE (d.changed OR l.latest > coalesce(d.evaluated_through, '-infinity'))
       -- only an evaluation of the metric rules judged them (a crash event's judges service_down)
       AND 'metric' = ANY(%(kinds)s::text[])
     ORDER BY d.id
    ON CONFLICT (agent_device_id) DO UPDATE
       SET metrics_seen = EXCLUDED.metrics_seen,
           evaluated_through = greatest(c.evaluated_through, EXCLUDED.evaluated_through),
           business_id = EXCLUDED.business_id, service_location_id = EXCLUDED.service_location_id,
           eligible = EXCLUDED.eligible, updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT 'opened' AS what, o.id, o.agent_alert_id AS rule_id, o.agent_device_id AS device_id, r.alert_name,
       NULL::bigint AS pairs, NULL::bigint AS work
  FROM opened o JOIN agent_alerts r ON r.id = o.agent_alert_id
UNION ALL
SELECT 'resolved', o.id, o.agent_alert_id, o.agent_device_id, NULL, NULL, NULL FROM opened o
 WHERE o.status = 'auto_resolved'
UNION ALL
SELECT 'resolved', x.id, x.agent_alert_id, x.agent_device_id, NULL, NULL, NULL FROM resolved x
UNION ALL
SELECT 'stats', NULL, NULL, NULL, NULL,
       (SELECT count(*) FROM wpairs) + (SELECT count(*) FROM judged WHERE kind <> 'metric'), (SELECT count(*) FROM work)
  FROM (SELECT (SELECT count(*) FROM bumped) + (SELECT count(*) FROM cursors) AS n) b

-- name: metric_windows
-- (fragment) THE judgement of a metric rule at an instant t, shared by the evaluator and the
-- backtest (docs/alerts.md, "Evaluation"). Given wpairs (rule_id, device_id, business_id,
-- service_location_id, metric, win, operator, threshold, hyst, aggregation), winstants
-- (device_id, part, t) and wfetched (device_id, part, collected_at, prev_at: the sample before in
-- the part, the metric columns; every row from at least win + slack before the part's first
-- instant), it yields wverdicts: per pair and instant the window's aggregate and whether it
-- breaches, clears, and is covered by maintenance.
--
-- The window at t: the samples of the device in [t - win - slack, t]. It counts (is "covered")
-- when it has a value of the metric, two unless win = 0, the first one within slack of t - win,
-- and no gap above max_gap between consecutive samples of it that ends inside (t - win, t]. The
-- aggregate of its values (avg, min, max) breaches the threshold (> >= < <=); it clears once it is
-- on the good side by the hysteresis. A maintenance window covering t (data time) suppresses a
-- breach.
wspans AS MATERIALIZED (
    -- The range join of instants to samples goes through buckets as wide as the window and its
    -- slack (integer microseconds, so exact): a sample of an instant's window lies in the
    -- instant's bucket or the one before, so the join is on equal keys, linear in the rows, not
    -- instants x samples. ``lo``: the part's first instant; samples no window reaches stay out.
    SELECT w.*, w.win + %(slack)s::interval AS span,
           greatest((extract(epoch FROM w.win + %(slack)s::interval) * 1000000)::bigint, 1) AS width, b.part, b.lo
      FROM wpairs w
      JOIN (SELECT device_id, part, min(t) AS lo FROM winstants GROUP BY device_id, part) b ON b.device_id = w.device_id
),
wkeyed AS MATERIALIZED (
    SELECT p.rule_id, f.device_id, f.part, f.collected_at, f.prev_at,
           (extract(epoch FROM f.collected_at) * 1000000)::bigint / p.width AS key,
           CASE p.metric
                WHEN 'cpu_percent' THEN f.cpu_percent::float8
                WHEN 'memory_used_gb' THEN f.memory_used_gb::float8
                WHEN 'memory_percent' THEN f.memory_percent::float8
                WHEN 'disk_used_gb' THEN f.disk_used_gb::float8
                WHEN 'disk_percent' THEN f.disk_percent::float8
                WHEN 'load_average_1m' THEN f.load_average_1m::float8
                WHEN 'load_average_5m' THEN f.load_average_5m::float8
                WHEN 'load_average_15m' THEN f.load_average_15m::float8
                WHEN 'uptime_seconds' THEN f.uptime_seconds::float8
                WHEN 'network_rx_bytes' THEN f.network_rx_bytes::float8
                WHEN 'network_tx_bytes' THEN f.network_tx_bytes::float8
           END AS v
      FROM wspans p
      JOIN wfetched f ON f.device_id = p.device_id AND f.part = p.part AND f.collected_at >= p.lo - p.span
),
wibucket AS (
    SELECT p.rule_id, p.device_id, p.part, i.t, p.win, p.span,
           (extract(epoch FROM i.t) * 1000000)::bigint / p.width AS key
      FROM wspans p
      JOIN winstants i ON i.device_id = p.device_id AND i.part = p.part
),
wikeyed AS MATERIALIZED (
    -- each instant under its own bucket and the one before (where the start of its window lies)
    SELECT rule_id, device_id, part, t, win, span, key FROM wibucket
    UNION ALL
    SELECT rule_id, device_id, part, t, win, span, key - 1 FROM wibucket
),
wwindows AS (
    SELECT i.rule_id, i.device_id, i.t,
           count(s.v) AS n, min(s.collected_at) FILTER (WHERE s.v IS NOT NULL) AS first_at,
           max(s.collected_at - s.prev_at) FILTER (WHERE s.collected_at > i.t - i.win
                                                     AND s.prev_at >= i.t - i.span) AS max_gap,
           avg(s.v) AS v_avg, min(s.v) AS v_min, max(s.v) AS v_max
      FROM wikeyed i
      JOIN wkeyed s ON s.rule_id = i.rule_id AND s.device_id = i.device_id AND s.part = i.part AND s.key = i.key
                   AND s.collected_at >= i.t - i.span AND s.collected_at <= i.t
     GROUP BY i.rule_id, i.device_id, i.t
),
wjudged AS (
    SELECT x.rule_id, x.device_id, x.t, w.business_id, w.service_location_id, w.win, w.operator, w.threshold,
           CASE w.aggregation WHEN 'min' THEN x.v_min WHEN 'max' THEN x.v_max ELSE x.v_avg END AS agg,
           w.hyst,
           x.n >= 1 AND (w.win = interval '0' OR x.n >= 2)
             AND x.first_at <= x.t - w.win + %(slack)s::interval
             AND coalesce(x.max_gap, interval '0') <= %(max_gap)s::interval AS covered
      FROM wwindows x
      JOIN wpairs w ON w.rule_id = x.rule_id AND w.device_id = x.device_id
),
wverdicts AS (
    SELECT j.*,
           j.covered AND CASE j.operator WHEN '>' THEN j.agg > j.threshold WHEN '>=' THEN j.agg >= j.threshold
                                         WHEN '<' THEN j.agg < j.threshold WHEN '<=' THEN j.agg <= j.threshold
                         END AS breach,
           j.covered AND CASE j.operator WHEN '>' THEN j.agg <= j.threshold - j.hyst
                                         WHEN '>=' THEN j.agg < j.threshold - j.hyst
                                         WHEN '<' THEN j.agg >= j.threshold + j.hyst
                                         WHEN '<=' THEN j.agg > j.threshold + j.hyst END AS clear,
           -- looked up only for a breach (the only verdict it changes)
           CASE WHEN j.covered AND CASE j.operator WHEN '>' THEN j.agg > j.threshold WHEN '>=' THEN j.agg >= j.threshold
                                                   WHEN '<' THEN j.agg < j.threshold
                                                   WHEN '<=' THEN j.agg <= j.threshold END
                THEN EXISTS (SELECT 1 FROM alert_maintenance_windows mw
                              WHERE mw.business_id = j.business_id AND mw.starts_at <= j.t AND mw.ends_at > j.t
                                AND (mw.service_location_id IS NULL OR mw.service_location_id = j.service_location_id)
                                AND (mw.agent_device_id IS NULL OR mw.agent_device_id = j.device_id))
                ELSE false END AS in_maintenance
      FROM wjudged j
),

-- name: episode_transitions
-- (fragment) Episodes from judged instants, shared by the evaluator and the backtest. Given
-- wevents (rule_id, device_id, t, ev 'B' or 'C', initially_open, ...) it yields wtransitions:
-- an episode opens at a breach while closed and closes at the next clear while open; whatever
-- comes between (more breaches, the hysteresis band, uncovered windows) changes nothing. So the
-- state after an instant is the last event up to it, and a transition is an event that differs
-- from the one before (or from the initial state). ``next_t``: the instant of the following
-- transition (an opening's clear), ``first``: the pair's first transition in this run.
wsteps AS (
    SELECT e.*, lag(e.ev) OVER (PARTITION BY e.rule_id, e.device_id ORDER BY e.t) AS prev_ev
      FROM wevents e
     WHERE e.ev IS NOT NULL
),
wtransitions AS (
    SELECT s.*, CASE s.ev WHEN 'B' THEN 'open' ELSE 'close' END AS step,
           lead(s.t) OVER w AS next_t, row_number() OVER w = 1 AS first
      FROM wsteps s
     WHERE s.ev IS DISTINCT FROM coalesce(s.prev_ev, CASE WHEN s.initially_open THEN 'B' ELSE 'C' END)
    WINDOW w AS (PARTITION BY s.rule_id, s.device_id ORDER BY s.t)
),

-- name: opened_in_ranges
-- The ingest hook's answer (alerts_triggered): the metric episodes opened at an instant inside a
-- flush's committed range of each device, whichever evaluator opened them. A periodic cycle may
-- judge freshly committed samples before the flush's hook does (the cycle holds the exclusive
-- lock, the hook waits for it); the episode is then already open and the hook opens nothing, yet
-- it was these samples that opened it. A metric episode's detected_at is the instant (a sample
-- time) whose window opened it, and the committed ranges hold only rows this flush inserted, so an
-- episode found here was opened after they committed. The triggered_at bound (instants older than
-- %(stale)s are never judged, and these were committed moments ago) keeps it to the index
-- idx_alert_history_device_time.
SELECT h.id, h.agent_device_id AS device_id, r.alert_name
  FROM unnest(%(devices)s::uuid[], %(lo)s::timestamptz[], %(hi)s::timestamptz[]) x(device_id, lo, hi)
  JOIN agent_alert_history h ON h.agent_device_id = x.device_id AND h.triggered_at >= now() - %(stale)s::interval
                            AND h.detected_at >= x.lo AND h.detected_at <= x.hi
  JOIN agent_alerts r ON r.id = h.agent_alert_id AND r.kind = 'metric'
 ORDER BY h.triggered_at, h.id

-- name: last_full_cycle
-- When the last full cycle finished: the periodic job runs one when it is older than an hour.
SELECT max(started_at) AS at FROM alert_evaluation_runs
 WHERE scope = 'all' AND finished_at IS NOT NULL AND error IS NULL

-- name: rejudge_device
-- A person resolved an episode of this device: its next cycle judges it again, as a full one would
-- (the resolve changes what its newest instant may open).
UPDATE alert_device_cursors SET eligible = NULL
 WHERE agent_device_id IN (SELECT agent_device_id FROM agent_alert_history WHERE id = ANY(%(ids)s::uuid[]))

-- name: run_start
INSERT INTO alert_evaluation_runs (instance, scope) VALUES (%(instance)s, %(scope)s) RETURNING id

-- name: run_finish
UPDATE alert_evaluation_runs
   SET finished_at = clock_timestamp(), pairs = %(pairs)s, opened = %(opened)s, resolved = %(resolved)s,
       duration_ms = %(duration_ms)s, error = %(error)s
 WHERE id = %(id)s

-- name: rule_insert
-- created_by/acknowledged_by/resolved_by: the portal user if it exists here (tokens may name users
-- this database does not hold; the foreign key would otherwise refuse the write).
INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, agent_device_id, conditions,
                          notification_enabled, notification_channels, notification_recipients, webhook_url,
                          create_ticket, is_active, created_by)
VALUES (%(alert_name)s, %(alert_type)s, %(severity)s, %(business_id)s, %(agent_device_id)s, %(conditions)s,
        %(notification_enabled)s, %(notification_channels)s, %(notification_recipients)s, %(webhook_url)s,
        %(create_ticket)s, %(is_active)s, (SELECT id FROM users WHERE id = %(created_by)s::uuid))
RETURNING id

-- name: rule_select
-- (fragment) A rule as the API shows it, with the API contract's defaults for columns left NULL.
SELECT id, alert_name, alert_type, severity, business_id, agent_device_id, conditions,
       coalesce(notification_enabled, true) AS notification_enabled,
       coalesce(notification_channels, '[]'::jsonb) AS notification_channels,
       coalesce(notification_recipients, '[]'::jsonb) AS notification_recipients,
       webhook_url, create_ticket, coalesce(is_active, true) AS is_active, last_triggered,
       coalesce(trigger_count, 0) AS trigger_count, created_at, updated_at, created_by
  FROM agent_alerts

-- name: rule_get
-- One live rule, only if the caller's scope may see it (another business's rule: no row, a 404).
-- include: rule_select
 WHERE id = %(id)s AND NOT coalesce(soft_delete, false)
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: rule_list
-- include: rule_select
 WHERE NOT coalesce(soft_delete, false)
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR business_id = %(business_id)s::uuid)
   AND (%(agent_id)s::uuid IS NULL OR agent_device_id = %(agent_id)s::uuid
        OR (agent_device_id IS NULL AND business_id = (SELECT business_id FROM agent_devices
                                                        WHERE id = %(agent_id)s::uuid)))
   AND (%(active)s::boolean IS NULL OR is_active = %(active)s::boolean)
 ORDER BY created_at, id

-- name: rule_update
UPDATE agent_alerts
   SET alert_name = %(alert_name)s, alert_type = %(alert_type)s, severity = %(severity)s,
       conditions = %(conditions)s, notification_enabled = %(notification_enabled)s,
       notification_channels = %(notification_channels)s, notification_recipients = %(notification_recipients)s,
       webhook_url = %(webhook_url)s, create_ticket = %(create_ticket)s, is_active = %(is_active)s,
       updated_at = now()
 WHERE id = %(id)s AND NOT coalesce(soft_delete, false)

-- name: rule_soft_delete
UPDATE agent_alerts SET soft_delete = true, is_active = false, updated_at = now()
 WHERE id = %(id)s AND NOT coalesce(soft_delete, false)
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
RETURNING id

-- name: close_rule_episodes
-- A rule that is disabled or deleted no longer watches: its open episodes resolve, with a note.
UPDATE agent_alert_history
   SET status = 'auto_resolved', resolved_at = now(),
       resolution_notes = concat_ws(E'\n', resolution_notes, %(note)s::text)
 WHERE agent_alert_id = %(id)s AND status IN ('active', 'acknowledged')
RETURNING id

-- name: location_business
SELECT business_id FROM service_locations
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: business_exists
SELECT id FROM businesses WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR id = %(scope)s::uuid)

-- name: episode_list
-- Episodes with filters; tenancy through the denormalised business_id.
SELECT h.id, h.agent_alert_id, r.alert_name, h.agent_device_id, d.device_name, h.business_id,
       h.triggered_at, h.resolved_at, h.severity, h.status, h.alert_message, h.metric_value,
       h.threshold_value, h.condition_since, coalesce(h.notification_sent, false) AS notification_sent,
       h.notification_sent_at, h.service_request_created, h.acknowledged_by, h.acknowledged_at,
       h.resolved_by, h.resolution_notes, count(*) OVER () AS total
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
 WHERE (%(scope)s::uuid IS NULL OR h.business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR h.business_id = %(business_id)s::uuid)
   AND (%(agent_id)s::uuid IS NULL OR h.agent_device_id = %(agent_id)s::uuid)
   AND (%(rule_id)s::uuid IS NULL OR h.agent_alert_id = %(rule_id)s::uuid)
   AND (%(statuses)s::text[] IS NULL OR h.status = ANY(%(statuses)s::text[]))
   AND (%(severities)s::text[] IS NULL OR h.severity = ANY(%(severities)s::text[]))
   AND (%(since)s::timestamptz IS NULL OR h.triggered_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR h.triggered_at < %(until)s::timestamptz)
 ORDER BY h.triggered_at DESC, h.id
 LIMIT %(limit)s OFFSET %(offset)s

-- name: episode_get
SELECT h.id, h.agent_alert_id, r.alert_name, h.agent_device_id, d.device_name, h.business_id,
       h.triggered_at, h.resolved_at, h.severity, h.status, h.alert_message, h.metric_value,
       h.threshold_value, h.condition_since, coalesce(h.notification_sent, false) AS notification_sent,
       h.notification_sent_at, h.service_request_created, h.acknowledged_by, h.acknowledged_at,
       h.resolved_by, h.resolution_notes
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
 WHERE h.id = %(id)s AND (%(scope)s::uuid IS NULL OR h.business_id = %(scope)s::uuid)

-- name: episode_lock
SELECT id, status FROM agent_alert_history
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
 FOR UPDATE

-- name: episode_acknowledge
UPDATE agent_alert_history
   SET status = 'acknowledged', acknowledged_by = (SELECT id FROM users WHERE id = %(user_id)s::uuid), acknowledged_at = now(),
       resolution_notes = concat_ws(E'\n', resolution_notes, %(notes)s::text)
 WHERE id = %(id)s AND status = 'active'

-- name: episode_resolve
UPDATE agent_alert_history
   SET status = 'resolved', resolved_at = now(), resolved_by = (SELECT id FROM users WHERE id = %(user_id)s::uuid),
       resolution_notes = concat_ws(E'\n', resolution_notes, %(notes)s::text)
 WHERE id = %(id)s AND status IN ('active', 'acknowledged')

-- name: enqueue_resolved
-- The same follow-up work an automatic resolve gets (ticket note, notifications).
INSERT INTO alert_outbox (alert_history_id, channel, event)
SELECT h.id, ch.channel, 'resolved'
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  -- include: rule_followup_channels
 WHERE h.id = ANY(%(ids)s::uuid[])
ON CONFLICT DO NOTHING

-- name: deliveries
SELECT l.channel, l.event, l.attempt, l.target, l.ok, l.status_code, l.error, l.duration_ms, l.attempted_at
  FROM alert_notification_log l
 WHERE l.alert_history_id = %(id)s
 ORDER BY l.attempted_at, l.id

-- name: maintenance_insert
INSERT INTO alert_maintenance_windows (business_id, service_location_id, agent_device_id, starts_at, ends_at,
                                       reason, created_by)
VALUES (%(business_id)s, %(service_location_id)s, %(agent_device_id)s, %(starts_at)s, %(ends_at)s,
        %(reason)s, (SELECT id FROM users WHERE id = %(created_by)s::uuid))
RETURNING id

-- name: maintenance_get
SELECT id, business_id, service_location_id, agent_device_id, starts_at, ends_at, reason, created_by, created_at,
       (starts_at <= now() AND ends_at > now()) AS active
  FROM alert_maintenance_windows
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: maintenance_list
SELECT id, business_id, service_location_id, agent_device_id, starts_at, ends_at, reason, created_by, created_at,
       (starts_at <= now() AND ends_at > now()) AS active
  FROM alert_maintenance_windows
 WHERE (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR business_id = %(business_id)s::uuid)
   AND (%(current)s::boolean IS NOT TRUE OR (starts_at <= now() AND ends_at > now()))
   AND (%(include_past)s::boolean OR ends_at > now())
 ORDER BY starts_at, id

-- name: maintenance_update
UPDATE alert_maintenance_windows SET starts_at = %(starts_at)s, ends_at = %(ends_at)s, reason = %(reason)s
 WHERE id = %(id)s

-- name: maintenance_delete
DELETE FROM alert_maintenance_windows
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
RETURNING id

-- name: ticket_create
-- The API contract's alert -> service request: business, location, title, description, priority from
-- severity (alert_severity_ticket_map), source 'automated_agent_alert'. Only if the episode has
-- no ticket yet (exactly one per episode).
INSERT INTO service_requests (business_id, service_location_id, title, description, priority_level_id,
                              urgency_level_id, status_id, source)
SELECT h.business_id, d.service_location_id,
       left(format('[%%s] %%s on %%s', upper(h.severity), r.alert_name, d.device_name), 500),
       format(E'%%s\n\nDevice: %%s (%%s)\nSeverity: %%s\nTriggered: %%s\nAlert id: %%s', h.alert_message,
              d.device_name, coalesce(d.hostname, '-'), h.severity,
              to_char(h.triggered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), h.id),
       m.priority_level_id, m.urgency_level_id, m.status_id, 'automated_agent_alert'
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
  LEFT JOIN alert_severity_ticket_map m ON m.severity = h.severity
 WHERE h.id = %(id)s AND h.service_request_created IS NULL
RETURNING id

-- name: ticket_link
UPDATE agent_alert_history SET service_request_created = %(sr)s WHERE id = %(id)s

-- name: ticket_annotate
-- On resolve: append what happened to the ticket (the technician closes it in the portal).
UPDATE service_requests sr
   SET description = concat_ws(E'\n\n', sr.description,
           format('Alert %%s at %%s.%%s', replace(h.status, '_', '-'),
                  to_char(h.resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  coalesce(' Notes: ' || h.resolution_notes, ''))),
       updated_at = now()
  FROM agent_alert_history h
 WHERE h.id = %(id)s AND sr.id = h.service_request_created

-- name: prune_runs
-- Housekeeping after each cycle: a week of cycle records is plenty to see trends and overlaps.
DELETE FROM alert_evaluation_runs WHERE started_at < now() - interval '7 days'

-- name: metric_rule_scopes
-- Which flushed devices could match a metric rule at all: lets the ingest hook skip its
-- evaluation round trip for fleets (or devices) without metric rules.
SELECT coalesce(bool_or(agent_device_id IS NULL), false) AS business_wide,
       coalesce(array_agg(agent_device_id) FILTER (WHERE agent_device_id IS NOT NULL), '{}') AS devices
  FROM agent_alerts
 WHERE kind = 'metric' AND is_active AND NOT soft_delete

-- name: rule_followup_channels
-- Included where episodes enqueue follow-up work: one row per outbox channel of rule ``r``
-- (a ticket if the rule, or else its business's ticket policy, says so, plus its enabled
-- webhook/email/sms channels).
CROSS JOIN LATERAL (
    SELECT 'ticket' WHERE
    -- include: rule_creates_ticket
    UNION ALL
    SELECT c FROM jsonb_array_elements_text(
           CASE WHEN r.notification_enabled AND jsonb_typeof(r.notification_channels) = 'array'
                THEN r.notification_channels ELSE '[]'::jsonb END) c
     WHERE c IN ('webhook', 'email', 'sms')
) ch(channel)

-- name: rule_creates_ticket
-- (fragment) Whether an episode of rule ``r`` (create_ticket, severity, business_id) opens a ticket:
-- the rule's own choice, else its business's policy (no policy row: every severity). THE rule,
-- for the evaluator's outbox (rule_followup_channels) and the backtest's ``ticket`` (backtest_ticket).
coalesce(r.create_ticket, r.severity = ANY(coalesce(
    (SELECT tp.ticket_severities FROM business_ticket_policy tp WHERE tp.business_id = r.business_id),
    ARRAY['info', 'warning', 'critical']::varchar[])))

-- name: backtest_ticket
-- Whether the backtested rule's episodes would open a ticket, by the evaluator's rule.
SELECT
-- include: rule_creates_ticket
       AS ticket
  FROM (SELECT %(create_ticket)s::boolean AS create_ticket, %(severity)s::varchar AS severity,
               %(business_id)s::uuid AS business_id) r

-- name: usable_recipients
-- Which of the given user ids may receive a rule's notifications: active, not deleted, and of the
-- rule's business or MSP staff (the same test the delivery applies, notifications/queries.sql).
SELECT id FROM users
 WHERE id = ANY(%(ids)s::uuid[]) AND coalesce(is_active, true) AND NOT coalesce(soft_delete, false)
   AND (business_id = %(business_id)s OR role IN ('admin', 'technician'))

-- name: backtest_planner
-- The evaluator's planner settings (begin_full_cycle) for the backtest statement.
SELECT set_config('enable_nestloop', 'off', true), set_config('jit', 'off', true)

-- name: jit_off
SET LOCAL jit = off

-- name: backtest_devices
-- The devices a rule of this scope would judge (the evaluator's eligibility), by name.
SELECT d.id, d.device_name, d.business_id, d.service_location_id
  FROM agent_devices d
 WHERE d.business_id = %(business_id)s AND (%(device_id)s::uuid IS NULL OR d.id = %(device_id)s::uuid)
   AND d.alerts_enabled AND d.monitoring_enabled AND d.is_active AND NOT d.soft_delete
 ORDER BY d.id

-- name: tier_invalidations
-- edition: tsl
-- Time ranges where the 5m or 1h continuous aggregate may not show every raw row yet: rows written
-- below an invalidation threshold wait in TimescaleDB's invalidation logs until a refresh
-- re-aggregates them (a range never refreshed stays invalid). The backtest reads raw rows there.
-- ``fine``: the range concerns the 5m aggregate (raw rows of agent_metrics, or the 5m aggregate's
-- own log), so every tier-served part of an hour is in doubt (the 1h aggregate is built on the
-- 5m one); otherwise only the part the 1h aggregate serves. After a refresh the logs keep an open
-- range from each aggregate's refresh end on: it lies past what that aggregate serves (its
-- watermark), and telling the two apart keeps the newest hour of every device off the raw path.
-- The logs' open ends are the int64 extremes, outside what a timestamptz holds (TimescaleDB's own
-- range: -210866803200000000 .. 9223371331200000000 microseconds from 1970): the first and last
-- day a Python datetime holds here.
SELECT CASE WHEN x.l <= -210866803200000000 THEN '0001-01-01 00:00:00+00'::timestamptz
            ELSE greatest(_timescaledb_functions.to_timestamp(x.l), '0001-01-01 00:00:00+00') END AS lo,
       CASE WHEN x.g >= 9223371331200000000 THEN '9999-12-31 00:00:00+00'::timestamptz
            ELSE least(_timescaledb_functions.to_timestamp(x.g), '9999-12-31 00:00:00+00') END AS hi,
       x.fine
  FROM (SELECT h.lowest_modified_value AS l, h.greatest_modified_value AS g,
               ca.user_view_name = 'agent_metrics_5m' AS fine
          FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log h
          JOIN _timescaledb_catalog.continuous_agg ca ON ca.raw_hypertable_id = h.hypertable_id
         WHERE ca.user_view_name IN ('agent_metrics_5m', 'agent_metrics_1h')
        UNION ALL
        SELECT m.lowest_modified_value, m.greatest_modified_value, ca.user_view_name = 'agent_metrics_5m'
          FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log m
          JOIN _timescaledb_catalog.continuous_agg ca ON ca.mat_hypertable_id = m.materialization_id
         WHERE ca.user_view_name IN ('agent_metrics_5m', 'agent_metrics_1h')) x
 WHERE x.g > -210866803200000000 AND x.l < 9223371331200000000  -- not wholly outside time

-- name: backtest
-- The episodes one metric rule would have opened, judged by the evaluator's own fragments
-- (metric_windows, episode_transitions) at every sample time in the given ranges of each device;
-- backtest.py chooses the ranges (docs/alerts.md, "Backtest"). No episode is open at the start,
-- nobody resolves by hand, and every instant is judged as it arrives (none is stale).
WITH wpairs AS MATERIALIZED (
    SELECT '00000000-0000-0000-0000-000000000000'::uuid AS rule_id, d.id AS device_id, d.business_id,
           d.service_location_id, %(metric)s::text AS metric, %(win)s::interval AS win,
           %(operator)s::text AS operator, %(threshold)s::float8 AS threshold, %(hyst)s::float8 AS hyst,
           %(aggregation)s::text AS aggregation
      FROM agent_devices d WHERE d.id = ANY(%(devices)s::uuid[])
),
wranges AS MATERIALIZED (
    SELECT r.device_id, r.part, r.lo, r.hi
      FROM unnest(%(r_device)s::uuid[], %(r_lo)s::timestamptz[], %(r_hi)s::timestamptz[])
           WITH ORDINALITY AS r(device_id, lo, hi, part)
),
wfetched AS MATERIALIZED (
    -- Each range's rows, from one window (and its slack) before its first instant: one range probe
    -- of the primary key per range (LATERAL, OFFSET 0).
    SELECT r.device_id, r.part, m.collected_at,
           lag(m.collected_at) OVER (PARTITION BY r.part ORDER BY m.collected_at) AS prev_at,
           m.collected_at >= r.lo AS instant,
           m.cpu_percent, m.memory_used_gb, m.memory_percent, m.disk_used_gb, m.disk_percent,
           m.load_average_1m, m.load_average_5m, m.load_average_15m, m.uptime_seconds,
           m.network_rx_bytes, m.network_tx_bytes
      FROM wranges r
     CROSS JOIN LATERAL (
        SELECT * FROM agent_metric_values m
         WHERE m.agent_device_id = r.device_id
           AND m.collected_at >= r.lo - %(win)s::interval - %(slack)s::interval AND m.collected_at <= r.hi
        OFFSET 0) m
),
winstants AS (
    SELECT device_id, part, collected_at AS t FROM wfetched WHERE instant
),
-- include: metric_windows
wevents AS (
    SELECT v.rule_id, v.device_id, v.t, v.agg AS value, false AS initially_open,
           CASE WHEN v.breach AND NOT v.in_maintenance THEN 'B' WHEN v.clear THEN 'C' END AS ev
      FROM wverdicts v
),
-- include: episode_transitions
episodes AS (
    SELECT device_id, t AS start, next_t AS stop, value FROM wtransitions WHERE step = 'open'
)
SELECT e.device_id, e.start, e.stop,
       -- as the evaluator stores a real column's value: the shortest decimal of its float
       CASE WHEN %(real)s THEN e.value::real::text::float8 ELSE e.value END AS value,
       CASE WHEN NOT %(real)s THEN CASE WHEN %(operator)s IN ('>', '>=') THEN max(v.agg) ELSE min(v.agg) END
            WHEN %(operator)s IN ('>', '>=') THEN max(v.agg)::real::text::float8
            ELSE min(v.agg)::real::text::float8 END AS peak,
       NULL::bigint AS instants
  FROM episodes e
  JOIN wverdicts v ON v.device_id = e.device_id AND v.covered AND v.t >= e.start
                  AND (e.stop IS NULL OR v.t < e.stop)
 GROUP BY e.device_id, e.start, e.stop, e.value
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, (SELECT count(*) FROM winstants)

-- name: ticket_policy
SELECT b.id AS business_id,
       coalesce(tp.ticket_severities, ARRAY['info', 'warning', 'critical']::varchar[]) AS ticket_severities,
       tp.updated_at
  FROM businesses b LEFT JOIN business_ticket_policy tp ON tp.business_id = b.id
 WHERE b.id = %(business_id)s AND b.soft_delete IS NOT TRUE
   AND (%(scope)s::uuid IS NULL OR b.id = %(scope)s::uuid)

-- name: set_ticket_policy
INSERT INTO business_ticket_policy (business_id, ticket_severities)
VALUES (%(business_id)s, %(ticket_severities)s::varchar[])
ON CONFLICT (business_id) DO UPDATE SET ticket_severities = EXCLUDED.ticket_severities, updated_at = now()
