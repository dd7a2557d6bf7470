-- Incremental alert cycles and the data time of episodes (docs/alerts.md, "Evaluation").
--
-- A metric rule is judged at every sample time of its device (an "instant"), in order: the
-- window ending at that sample opens or clears an episode. The periodic cycle only judges devices
-- whose inputs changed since they were last judged (new samples, rules, maintenance windows,
-- the device's own scope); what it last saw is kept here.

-- Per device, what the last evaluation of its metric rules read (evaluator.py, alerts/queries.sql).
CREATE TABLE alert_device_cursors (
    agent_device_id     uuid PRIMARY KEY REFERENCES agent_devices(id) ON DELETE CASCADE,
    -- agent_devices.last_metrics_received as that evaluation saw it: ingest sets it in the
    -- transaction that writes the samples, so a different value means samples it has not judged
    metrics_seen        timestamptz,
    -- the newest sample time whose windows have been judged (never moves back)
    evaluated_through   timestamptz,
    -- the device's scope as judged (a change makes it due: rules and maintenance follow them)
    business_id         uuid,
    service_location_id uuid,
    eligible            boolean,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Per business, a fingerprint of the row versions of its rules and maintenance windows as the
-- last periodic cycle judged them: a different fingerprint makes all its devices due.
CREATE TABLE alert_business_seen (
    business_id uuid PRIMARY KEY REFERENCES businesses(id) ON DELETE CASCADE,
    fingerprint text NOT NULL
);

-- The data time of an episode: the newest sample of the window that opened it, and of the one
-- that cleared it (for agent_offline and service_down rules, the time of the cycle). triggered_at
-- and resolved_at stay wall-clock times of the evaluation.
ALTER TABLE agent_alert_history
    ADD COLUMN detected_at timestamptz,
    ADD COLUMN cleared_at timestamptz;
