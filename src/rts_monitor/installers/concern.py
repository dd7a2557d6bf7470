"""What the installers bring: ``/install.sh``, ``/install.ps1`` and the agent wheel they install."""

from rts_monitor.core.concern import Concern
from rts_monitor.installers import routes

CONCERN = Concern("installers", routes=routes.HANDLERS)
