"""What rollouts bring: the rollout endpoints and the job that advances them."""

from rts_monitor.core.concern import Concern
from rts_monitor.rollouts import jobs, routes

CONCERN = Concern("rollouts", routes=routes.HANDLERS, jobs=[jobs.ADVANCE])
