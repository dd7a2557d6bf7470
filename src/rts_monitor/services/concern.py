"""What monitored-service choices bring: the portal's routes to set them."""

from rts_monitor.core.concern import Concern
from rts_monitor.services import routes

CONCERN = Concern("services", routes=routes.HANDLERS)
