"""What the rollup tiers bring: the DBA API, ``rts-monitor tiers …``, and (Apache edition) the
refresh and retention jobs."""

from rts_monitor.core.concern import Concern
from rts_monitor.tiers import cli, jobs, routes

CONCERN = Concern("tiers", routes=routes.HANDLERS, jobs=[jobs.REFRESH, jobs.RETENTION], cli=cli.register)
