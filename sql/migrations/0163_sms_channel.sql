-- SMS as a notification channel (docs/alerts.md, "SMS").
ALTER TABLE alert_outbox DROP CONSTRAINT IF EXISTS alert_outbox_channel_check;
ALTER TABLE alert_outbox ADD CONSTRAINT alert_outbox_channel_check
    CHECK (channel IN ('ticket', 'webhook', 'email', 'sms'));

-- One text per episode per recipient, ever: a retry of the outbox row skips the recipients already
-- reached, and the digest (many episodes opening at once for one number) counts recent texts here.
CREATE TABLE sms_deliveries (
    alert_history_id UUID NOT NULL REFERENCES agent_alert_history(id) ON DELETE CASCADE,
    recipient        VARCHAR(20) NOT NULL,  -- E.164
    sent_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    digest           BOOLEAN NOT NULL DEFAULT false,  -- covered by a digest text, not its own
    provider_id      TEXT,                             -- the provider's message id (Twilio sid)
    PRIMARY KEY (alert_history_id, recipient)
);
CREATE INDEX idx_sms_deliveries_recent ON sms_deliveries (recipient, sent_at DESC);
