"""What alerting brings: rules, episodes and maintenance endpoints; the evaluation, ticket and
notification jobs; and the check of just-ingested devices that answers ``alerts_triggered``."""

from rts_monitor.alerts import jobs, routes
from rts_monitor.core.concern import Concern

CONCERN = Concern("alerts", routes=routes.HANDLERS, jobs=[jobs.EVALUATE, jobs.TICKETS, jobs.NOTIFY],
                  after_ingest=[jobs.on_ingest])
