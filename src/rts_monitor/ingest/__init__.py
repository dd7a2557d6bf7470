"""Metric ingestion: decode, validate, group-commit by binary COPY, side effects, hooks."""
