"""Notifications of alert episodes: signed webhooks and SMTP e-mail, delivered from the outbox.

The evaluator only writes ``alert_outbox`` rows in its own transaction; the jobs here deliver them
later with retries and backoff and log every attempt, so a slow or failing channel never delays
evaluation and never loses an alert.
"""
