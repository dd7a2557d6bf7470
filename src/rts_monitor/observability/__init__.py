"""The backend watching itself: the metrics endpoint and sampler, and ``rts-monitor doctor``
(docs/operations.md). The instruments are ``core/metrics.py``; readiness is ``api/health.py``."""
