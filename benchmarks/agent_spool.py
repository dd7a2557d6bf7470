"""The agent's spool: what durability (``synchronous=FULL``) costs, and how fast a backlog drains.

One command:

    .venv/bin/python benchmarks/agent_spool.py [--samples 2000] [--backlog 20000] [--runs 3]

Per run, side by side in a temporary directory on the same disk:

* ``put``: our path (``rts_agent.spool.Spool.put``: WAL, ``synchronous=FULL``, one transaction per
  sample with the byte counter and the bound check) against two ceilings with the same schema,
  ``synchronous=NORMAL`` (durable against a process crash, not a power cut) and ``synchronous=OFF``
  (not durable), each putting ``--samples`` real collector samples (``Collector.sample()`` bodies);
* ``put, spool full``: our path when every put also drops the oldest sample (bounded spool);
* ``drain``: ``peek(500)`` + ``ack`` of a ``--backlog`` spool (what catch-up costs the agent itself,
  excluding the network).

Prints a table of medians (samples/s) and ratios to the ceiling; writes
``benchmarks/results/agent_spool.json``. At the plan's 5-minute interval an agent puts one sample
every 300 s, so any of these rates is far above need; the point is what FULL costs and that the
drain is never the bottleneck of a catch-up.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from rts_agent.collect import Collector
from rts_agent.spool import Spool


def stamp(i: int) -> str:
    """A distinct, ordered collected_at per index (i microseconds after midnight)."""
    seconds, micros = divmod(i, 1_000_000)
    return f"2026-01-01T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micros:06d}Z"


def bodies(n: int) -> list[bytes]:
    c = Collector()
    sample = msgspec.json.encode(c.sample())
    return [sample] * n


def put_rate(path: Path, data: list[bytes], *, sync: str | None, max_bytes: int = 10**12) -> float:
    spool = Spool(path, max_bytes=max_bytes)
    if sync is not None:
        spool._db.execute(f"PRAGMA synchronous={sync}")
    started = time.perf_counter()
    for i, body in enumerate(data):
        spool.put(stamp(i), body)
    elapsed = time.perf_counter() - started
    spool.close()
    return len(data) / elapsed


def drain_rate(path: Path, n: int, body: bytes) -> float:
    spool = Spool(path, max_bytes=10**12)
    spool._db.execute("PRAGMA synchronous=OFF")  # filling is not what is measured
    spool._db.execute("BEGIN")
    spool._db.executemany("INSERT INTO samples (collected_at, body, bytes) VALUES (?, ?, ?)",
                          ((stamp(i), body, len(body)) for i in range(n)))
    spool._db.execute("INSERT INTO counters (name, value) VALUES ('bytes', ?)", (n * len(body),))
    spool._db.execute("COMMIT")
    spool._db.execute("PRAGMA synchronous=FULL")
    started = time.perf_counter()
    drained = 0
    while batch := spool.peek(500):
        spool.ack([p.seq for p in batch])
        drained += len(batch)
    elapsed = time.perf_counter() - started
    spool.close()
    assert drained == n
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = bodies(args.samples)
    size = len(data[0])
    results: dict[str, list[float]] = {k: [] for k in ("put FULL (ours)", "put NORMAL", "put OFF (ceiling)",
                                                        "put FULL, spool full", "drain peek+ack")}
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
            d = Path(tmp)
            print(f"run {run}/{args.runs}: put FULL ...", file=sys.stderr, flush=True)
            results["put FULL (ours)"].append(put_rate(d / "a.db", data, sync=None))
            print(f"run {run}/{args.runs}: put NORMAL / OFF ...", file=sys.stderr, flush=True)
            results["put NORMAL"].append(put_rate(d / "b.db", data, sync="NORMAL"))
            results["put OFF (ceiling)"].append(put_rate(d / "c.db", data, sync="OFF"))
            print(f"run {run}/{args.runs}: bounded spool ...", file=sys.stderr, flush=True)
            results["put FULL, spool full"].append(put_rate(d / "d.db", data, sync=None, max_bytes=100 * size))
            print(f"run {run}/{args.runs}: drain {args.backlog} ...", file=sys.stderr, flush=True)
            results["drain peek+ack"].append(drain_rate(d / "e.db", args.backlog, data[0]))
    ceiling = statistics.median(results["put OFF (ceiling)"])
    rows: list[dict[str, Any]] = []
    for name, rates in results.items():
        med = statistics.median(rates)
        ratio = f"{med / ceiling:.2f}" if name.startswith("put") else "-"
        rows.append({"path": name, "median_per_s": round(med), "runs": [round(r) for r in rates],
                     "vs_ceiling": ratio})
    print(f"\nsample body {size} bytes, {args.samples} puts, backlog {args.backlog}, {args.runs} runs (medians)")
    print(f"{'path':<22} {'samples/s':>10} {'x ceiling':>10}  runs")
    for r in rows:
        print(f"{r['path']:<22} {r['median_per_s']:>10} {r['vs_ceiling']:>10}  {r['runs']}")
    out = Path(__file__).parent / "results" / "agent_spool.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"sample_bytes": size, "samples": args.samples, "backlog": args.backlog,
                               "runs": args.runs, "sqlite": sqlite3.sqlite_version, "results": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
