"""What a concern brings to the application, declared once in its own package (``concern.py``).

``rts_monitor.wiring.CONCERNS`` lists every concern; the app, the scheduler and the CLI read that
list and nothing else, so adding a concern means writing its ``concern.py`` and adding one line
there.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

from rts_monitor.core.context import AfterIngest, AppContext
from rts_monitor.core.scheduler import Job

# A long-lived service (a pipeline, a LISTEN connection): entered after the pool opens, closed in
# reverse order at shutdown (so e.g. the ingest pipeline drains before the pool closes).
Component = Callable[[AppContext], AbstractAsyncContextManager[None]]
# Adds subcommands to ``rts-monitor``; each parser sets ``func`` (args, settings) -> exit code.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # add_subparsers()
CliRegistrar = Callable[[SubParsers], None]


@dataclass(frozen=True)
class Concern:
    name: str
    routes: Sequence[Any] = ()  # Litestar route handlers and controllers
    components: Sequence[Component] = ()
    jobs: Sequence[Job] = ()
    cli: CliRegistrar | None = None
    after_ingest: Sequence[AfterIngest] = ()
