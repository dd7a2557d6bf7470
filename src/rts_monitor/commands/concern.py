"""What remote commands bring: the command endpoints, the agent's WebSocket, the LISTEN/NOTIFY
hub that pushes commands to it, and the timeout job."""

from rts_monitor.commands import hub, jobs, routes, ws
from rts_monitor.core.concern import Concern

CONCERN = Concern("commands", routes=[*routes.HANDLERS, *ws.HANDLERS], components=[hub.component],
                  jobs=[jobs.TIMEOUTS])
