"""What the rollup tiers bring: the DBA API, ``rts-monitor tiers …``, the refresh and retention jobs
(apache and postgres editions) and the partitions job (postgres edition)."""

from rts_monitor.core.concern import Concern
from rts_monitor.tiers import cli, jobs, routes

CONCERN = Concern("tiers", routes=routes.HANDLERS, jobs=[jobs.REFRESH, jobs.RETENTION, jobs.PARTITIONS],
                  cli=cli.register)
