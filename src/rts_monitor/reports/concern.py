"""What reports bring: ``GET /api/reports/availability``."""

from rts_monitor.core.concern import Concern
from rts_monitor.reports import routes

CONCERN = Concern("reports", routes=routes.HANDLERS)
