"""What the software inventory brings: its upload and read endpoints."""

from rts_monitor.core.concern import Concern
from rts_monitor.inventory import routes

CONCERN = Concern("inventory", routes=routes.HANDLERS)
