"""What the operator console brings: its pages under /console (and their assets), the live
channel's LISTEN connection and the housekeeping of sessions. See docs/console.md."""

from rts_monitor.console import jobs, live, routes
from rts_monitor.core.concern import Concern

CONCERN = Concern("console", routes=routes.HANDLERS, components=[live.component], jobs=[jobs.CLEANUP])
