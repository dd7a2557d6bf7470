"""What observability brings: ``GET /metrics`` and the gauge sampler. (``rts-monitor doctor`` is
registered by the top-level CLI: it checks every concern's jobs, which only the wiring knows.)"""

from rts_monitor.core.concern import Concern
from rts_monitor.observability import routes, sampler

CONCERN = Concern("observability", routes=routes.HANDLERS, components=[sampler.component])
