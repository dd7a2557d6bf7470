"""rts-agent: the monitoring agent that runs on customer machines.

Collects metrics with psutil, writes every sample to an on-disk SQLite spool first, drains the
spool to the rts-monitor API in acknowledged batches, and executes allow-listed commands received
over a WebSocket (or by polling when the socket is unavailable).
"""

__version__ = "0.1.0"
