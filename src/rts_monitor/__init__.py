"""rts-monitor: time-series-first monitoring backend for MSPs."""

__version__ = "0.1.0"
