"""What the audit log brings: ``GET /api/admin/audit`` (entries are written by the concerns whose
staff actions they record, through ``audit.service.record``)."""

from rts_monitor.audit import routes
from rts_monitor.core.concern import Concern

CONCERN = Concern("audit", routes=routes.HANDLERS)
