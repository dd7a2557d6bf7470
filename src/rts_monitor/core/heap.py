"""Process-level tuning of a long-running server: the garbage collector.

Why: an ingest request allocates thousands of short-lived containers (a 500-sample batch is
~12k objects), so generation-0 collections run several times per request, and every older
generation's collection walks the whole start-up heap (the Litestar app, routes, OpenAPI models,
imported modules: hundreds of thousands of objects that live as long as the process). perf put
~25% of an API worker's CPU under (a) load in ``gc_collect_main`` and its visitors.
``gc.freeze()`` after start-up moves that heap into the permanent generation, so collections only
walk what requests allocated. Measured with ``benchmarks/ingest.py``: server CPU per 500-sample
request 3.4 -> 2.8 ms, one-sample requests 195 -> 147 us (docs/ingest.md).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Collect once, then exempt every surviving object from future collections.

    Called once the app, the pool and the long-lived components exist; objects created later
    (requests, caches) are collected normally. Reference cycles in the frozen heap are never
    reclaimed, which is what start-up objects are anyway: they live until the process exits.
    """
    gc.collect()
    gc.freeze()
    log.info("runtime.gc_frozen", extra={"frozen_objects": gc.get_freeze_count()})
