-- Tickets by policy (docs/alerts.md, "Tickets"): which severities open a ticket, per business;
-- a rule's create_ticket overrides it either way, NULL follows it.
CREATE TABLE business_ticket_policy (
    business_id       UUID PRIMARY KEY REFERENCES businesses(id) ON DELETE CASCADE,
    ticket_severities VARCHAR(50)[] NOT NULL
        CHECK (ticket_severities <@ ARRAY['info', 'warning', 'critical']::varchar[]),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A business without a row follows the API contract (every alert opens a ticket). Businesses that
-- exist today keep what they had: no tickets unless a rule asks for one.
INSERT INTO business_ticket_policy (business_id, ticket_severities)
SELECT id, '{}' FROM businesses;

ALTER TABLE agent_alerts ALTER COLUMN create_ticket DROP NOT NULL,
                         ALTER COLUMN create_ticket DROP DEFAULT;
-- false was only ever the default: such rules now follow their business's policy (which, above,
-- keeps them ticket-less); true stays an explicit "always".
UPDATE agent_alerts SET create_ticket = NULL WHERE create_ticket = false;
