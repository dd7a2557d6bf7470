"""Alerting: rules (SQL-evaluated), episodes and their lifecycle, maintenance windows, tickets.

Rules live in ``agent_alerts``; each evaluation cycle turns them into open/resolve decisions for
every (rule, device) pair with a few set-based statements (``evaluator``). Side effects that may
be slow or fail (tickets, notifications) go through ``alert_outbox`` and the outbox job.
"""
