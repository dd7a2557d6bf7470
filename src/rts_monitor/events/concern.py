"""What events bring: agents report them, the portal lists them."""

from rts_monitor.core.concern import Concern
from rts_monitor.events import routes

CONCERN = Concern("events", routes=routes.HANDLERS)
