"""What monitored services bring: the portal's routes to choose them, the remediation job."""

from rts_monitor.core.concern import Concern
from rts_monitor.services import jobs, routes

CONCERN = Concern("services", routes=routes.HANDLERS, jobs=[jobs.REMEDIATE])
