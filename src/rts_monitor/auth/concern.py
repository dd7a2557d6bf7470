"""What authentication brings: ``rts-monitor token mint``, the pruning of the rate limits' failure
counts and the marking of old agent tokens for rotation (the checks are used by the web layer's
dependencies and the concerns)."""

from rts_monitor.auth import cli, jobs
from rts_monitor.core.concern import Concern

CONCERN = Concern("auth", cli=cli.register, jobs=[jobs.PRUNE_FAILURES, jobs.ROTATE_AGENT_TOKENS])
