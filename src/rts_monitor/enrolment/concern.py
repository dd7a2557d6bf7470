"""What enrolment brings: registration tokens and ``POST /api/agents/register``."""

from rts_monitor.core.concern import Concern
from rts_monitor.enrolment import routes

CONCERN = Concern("enrolment", routes=routes.HANDLERS)
