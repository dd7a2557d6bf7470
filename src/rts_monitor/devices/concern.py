"""What the fleet brings: heartbeat and config, the fleet views, and the presence job."""

from rts_monitor.core.concern import Concern
from rts_monitor.devices import jobs, routes

CONCERN = Concern("devices", routes=routes.HANDLERS, jobs=[jobs.PRESENCE])
