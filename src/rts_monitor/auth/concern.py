"""What authentication brings: ``rts-monitor token mint`` (the checks are used by the web layer's
dependencies and by every concern's services)."""

from rts_monitor.auth import cli
from rts_monitor.core.concern import Concern

CONCERN = Concern("auth", cli=cli.register)
