"""Rollup tiers above ``agent_metrics``: definitions, Apache-edition maintenance, DBA controls."""
