"""Metric history for charts: plan (tier choice), raw tail, rates, fleet aggregation."""
