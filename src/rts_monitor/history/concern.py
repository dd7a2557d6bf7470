"""What history brings: the chart endpoints (per device and fleet)."""

from rts_monitor.core.concern import Concern
from rts_monitor.history import routes

CONCERN = Concern("history", routes=routes.HANDLERS)
