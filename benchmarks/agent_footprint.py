"""What the agent costs the machine it runs on, measured from outside the agent process.

One command (a database server must be reachable, as for every benchmark: ``rts-monitor db up``):

    .venv/bin/python benchmarks/agent_footprint.py [--quick] [--window 60] [--windows 5]
        [--agent-src DIR] [--label NAME] [--baseline-src DIR] [--baseline-label NAME] [--out FILE]

It creates a database (``rts_bench_footprint_<pid>``, migrated, dropped at the end), starts a real
``rts-monitor serve``, registers real agents with one-time tokens (``rts-agent install``) and runs
them (``rts-agent run``) side by side, each with its own state directory on the repository's disk:

* ``idle``: nothing due in the measured windows (metrics and heartbeat every 3600 s; the server's
  WebSocket keep-alive pings still arrive, every 20 s by default);
* ``10 s`` / ``60 s`` / ``300 s``: the metrics interval (heartbeat at the server's 300 s);
* the floor beside them: a bare Python idling in ``asyncio.sleep``, and the same Python after
  importing the agent's dependencies (aiohttp, psutil, msgspec, sqlite3): what no agent code can
  go below without dropping a dependency.

Each process is read from ``/proc/<pid>`` at the edge of ``--windows`` fixed windows of
``--window`` seconds: CPU time (its threads' time on CPU from ``schedstat``, in ns, plus the
reaped children's utime + stime, so a spawned ``systemctl`` or ``dpkg-query`` counts; the coarse
clock-tick sum is kept beside it as a cross-check), RSS (VmRSS, and VmHWM at the end), bytes the
process caused to be written to storage (``/proc/<pid>/io`` ``write_bytes``, children included)
and context switches (summed over threads: a proxy for wake-ups). CPU time, not wall clock,
because the machine is shared: the table shows the median window and the spread (min-max). The
300 s agent is reported over the whole phase, which holds whole intervals only when the phase is
a multiple of 300 s (the default 5 x 60 s is exactly one); per-window medians would hide its one
sample.

Then, with the CPU windows over (strace slows what it traces): ``strace -f -c`` attached to each
agent for one window counts fsync/fdatasync, writes and renames. Then start-up: an agent started
``--starts`` times, timed from ``exec`` to its first sample in the server's database. Last,
in-process and per call, what each collector costs (CPU incl. children): the services collector
with 5 monitored services through every path this machine can run (``systemctl`` processes; D-Bus
when ``dbus-daemon`` is installed, against a stand-in systemd on a private bus, because this
machine has no systemd), the inventory (``dpkg-query``) and the spool write of one sample.

``--agent-src`` runs another checkout's agent (its ``src`` directory, put first on PYTHONPATH);
``--baseline-src`` runs a second agent build beside it, in the same windows against the same
server, start-ups taking turns: on a shared machine whose load changes by the minute (CPU time
grows with contention too), only figures taken side by side compare. The "before" figures in
``agent/README.md`` were taken that way, with the code before the footprint work
(``git archive bf0d8e3 agent/src``). Prints a table; writes JSON to
``benchmarks/results/agent_footprint.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from support import create_db, drop_db, say, start_api

from rts_monitor.auth import portal
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devtools import apiprocess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "agent_footprint.json"
TICK = os.sysconf("SC_CLK_TCK")
SERVICES = ["cron", "ssh", "nginx", "postgresql", "docker"]  # 5 monitored services
FAKE_SYSTEMD = ROOT / "agent" / "tests" / "fake_systemd.py"

# name -> agent environment (on top of the registration's defaults)
AGENTS: dict[str, dict[str, str]] = {
    "idle": {"RTS_AGENT_METRICS_INTERVAL": "3600", "RTS_AGENT_HEARTBEAT_INTERVAL": "3600"},
    "10 s": {"RTS_AGENT_METRICS_INTERVAL": "10"},
    "60 s": {"RTS_AGENT_METRICS_INTERVAL": "60"},
    "300 s": {"RTS_AGENT_METRICS_INTERVAL": "300"},
}
FLOORS: dict[str, str] = {
    "python asyncio.sleep (floor)": "import asyncio; asyncio.run(asyncio.sleep(86400))",
    "python + agent's imports (floor)": (
        "import asyncio, sqlite3, aiohttp, msgspec, psutil; asyncio.run(asyncio.sleep(86400))"),
}


# -- /proc readings ---------------------------------------------------------------------------

@dataclass
class Reading:
    at: float
    cpu_s: float  # threads' time on CPU (schedstat, ns) + reaped children's utime + stime
    ticks_s: float  # utime + stime + cutime + cstime (clock ticks): the coarse cross-check
    rss_kib: int
    hwm_kib: int
    write_bytes: int
    switches: int


def read_proc(pid: int) -> Reading:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in stat[11:15]) / TICK  # utime stime cutime cstime
    children = sum(int(x) for x in stat[13:15]) / TICK
    on_cpu_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            on_cpu_ns += int((task / "schedstat").read_text().split()[0])
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    io = dict(line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    cpu = on_cpu_ns / 1e9 + children if on_cpu_ns else ticks
    return Reading(time.monotonic(), cpu, ticks, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0]),
                   int(io["write_bytes"]), switches)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    state_dir: Path | None = None
    agent_id: str | None = None
    readings: list[Reading] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid


def drain(pipe: Any, path: Path) -> None:
    """Keep the child's log off its own disk writes (as under systemd, where journald writes it)."""
    with open(path, "ab") as out:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            out.write(chunk)


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Proc:
    popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    threading.Thread(target=drain, args=(popen.stdout, log), daemon=True).start()
    return Proc(name, popen)


def stop(proc: Proc, sig: int = signal.SIGTERM) -> None:
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)


# -- the world: server, registration tokens, agents ---------------------------------------------

class World:
    def __init__(self, db_url: str, base: str, secret: str, tmp: Path, agent_env: dict[str, str]) -> None:
        self.db_url, self.base, self.tmp, self.agent_env = db_url, base, tmp, agent_env
        with psycopg.connect(db_url, autocommit=True) as conn:
            biz = conn.execute("INSERT INTO businesses (business_name) VALUES ('bench') RETURNING id").fetchone()
            assert biz is not None
            loc = conn.execute("INSERT INTO service_locations (business_id, location_name) VALUES (%s, 'HQ') "
                               "RETURNING id", (biz[0],)).fetchone()
            admin = conn.execute("INSERT INTO users (email, role) VALUES ('a@bench', 'admin') RETURNING id").fetchone()
        assert loc is not None and admin is not None
        self.business_id, self.location_id = str(biz[0]), str(loc[0])
        token = portal.mint(Settings(jwt_secret=secret), role="admin", user_id=uuid.UUID(str(admin[0])))
        self.headers = {"Authorization": f"Bearer {token}"}

    def install(self, name: str) -> Path:
        resp = httpx.post(self.base + "/api/agents/registration-tokens", headers=self.headers, timeout=30,
                          json={"business_id": self.business_id, "service_location_id": self.location_id,
                                "device_name": f"bench-{name}", "expires_in_hours": 1})
        resp.raise_for_status()
        state = self.tmp / ("agent-" + re.sub(r"\W+", "", name))
        out = subprocess.run([sys.executable, "-m", "rts_agent.cli", "--state-dir", str(state), "install",
                              "--server", self.base, "--token", resp.json()["token"], "--no-systemd"],
                             env=self.agent_env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"install failed: {out.stdout}{out.stderr}")
        return state

    def start(self, name: str, state: Path, env: dict[str, str]) -> Proc:
        proc = spawn(name, [sys.executable, "-m", "rts_agent.cli", "--state-dir", str(state), "run"],
                     {**self.agent_env, **env}, self.tmp / f"{state.name}.log")
        proc.state_dir = state
        proc.agent_id = json.loads((state / "config.json").read_text())["agent_id"]
        return proc

    def samples(self, conn: psycopg.Connection[Any], agent_id: str) -> int:
        row = conn.execute("SELECT count(*) FROM agent_metrics WHERE agent_device_id = %s", (agent_id,)).fetchone()
        return int(row[0]) if row else 0


# -- phases ---------------------------------------------------------------------------------------

def measure_windows(procs: list[Proc], window: float, windows: int) -> None:
    for proc in procs:
        proc.readings = [read_proc(proc.pid)]
    for i in range(windows):
        time.sleep(window)
        for proc in procs:
            proc.readings.append(read_proc(proc.pid))
        last = {p.name: p.readings[-1].cpu_s - p.readings[-2].cpu_s for p in procs}
        say(f"window {i + 1}/{windows}: CPU s " + ", ".join(f"{k} {v:.2f}" for k, v in last.items()))


def summarize(proc: Proc, whole_phase: bool) -> dict[str, Any]:
    r = proc.readings
    per_min = [(b.cpu_s - a.cpu_s) * 60 / (b.at - a.at) for a, b in itertools.pairwise(r)]
    switches = [(b.switches - a.switches) * 60 / (b.at - a.at) for a, b in itertools.pairwise(r)]
    span = r[-1].at - r[0].at
    total_cpu = r[-1].cpu_s - r[0].cpu_s
    cpu = total_cpu * 60 / span if whole_phase else statistics.median(per_min)
    return {
        "cpu_s_per_min": round(cpu, 4), "cpu_pct_of_core": round(cpu / 60 * 100, 3),
        "cpu_s_per_min_windows": [round(x, 4) for x in per_min],
        "cpu_s_per_min_whole_phase": round(total_cpu * 60 / span, 4),
        "cpu_s_per_min_ticks_whole_phase": round((r[-1].ticks_s - r[0].ticks_s) * 60 / span, 4),
        "rss_mib": round(statistics.median(x.rss_kib for x in r) / 1024, 1),
        "peak_rss_mib": round(r[-1].hwm_kib / 1024, 1),
        "write_bytes_per_hour": round((r[-1].write_bytes - r[0].write_bytes) * 3600 / span),
        "write_bytes_in_phase": r[-1].write_bytes - r[0].write_bytes,
        "context_switches_per_min": round(statistics.median(switches), 1),
        "measured_seconds": round(span, 1), "cpu_median_of_windows": not whole_phase,
    }


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def strace_counts(procs: list[Proc], seconds: float, tmp: Path) -> dict[str, dict[str, Any]]:
    """Syscall counts per agent over ``seconds`` (strace -f -c attached to the running process)."""
    if shutil.which("strace") is None:
        return {p.name: {"error": "strace not installed"} for p in procs}
    tracers = []
    for proc in procs:
        out = tmp / f"strace-{proc.pid}.txt"
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-e",
                                   "trace=fsync,fdatasync,write,pwrite64,writev,rename,renameat,renameat2,openat",
                                   "-p", str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tracers.append((proc, tracer, out))
    time.sleep(seconds)
    result: dict[str, dict[str, Any]] = {}
    for proc, tracer, out in tracers:
        tracer.send_signal(signal.SIGINT)
        try:
            _, err = tracer.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            tracer.kill()
            _, err = tracer.communicate()
        counts: dict[str, int] = {}
        text = out.read_text() if out.exists() else ""
        for line in text.splitlines():
            m = _STRACE_ROW.match(line)
            if m and m[2] != "total":
                counts[m[2]] = int(m[1])
        message = err.decode(errors="replace")
        if not counts and "attached" not in message:  # could not trace at all (no ptrace here)
            result[proc.name] = {"error": message.strip()[:300]}
            continue
        fsyncs = counts.get("fsync", 0) + counts.get("fdatasync", 0)
        result[proc.name] = {"seconds": seconds, "calls": counts, "fsyncs": fsyncs,
                             "fsyncs_per_hour": round(fsyncs * 3600 / seconds)}
    return result


def measure_startup(world: World, starts: int, variants: dict[str, dict[str, str]]) -> dict[str, Any]:
    """exec -> first sample in the server's database, ``starts`` times per variant (one registered
    agent each), the variants taking turns so that a change in the machine's load hits them alike."""
    states = {label: world.install(f"startup-{i}") for i, label in enumerate(variants)}
    ready: dict[str, list[float]] = {label: [] for label in variants}
    first: dict[str, list[float]] = {label: [] for label in variants}
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        for i in range(starts):
            for label, env in variants.items():
                state = states[label]
                before = world.samples(conn, json.loads((state / "config.json").read_text())["agent_id"])
                pid_file = state / "agent.pid"
                pid_file.unlink(missing_ok=True)
                t0 = time.monotonic()
                proc = world.start("startup", state, {**env, "RTS_AGENT_METRICS_INTERVAL": "300"})
                assert proc.agent_id is not None
                t_ready = None
                deadline = t0 + 60
                while time.monotonic() < deadline:
                    if t_ready is None and pid_file.exists():
                        t_ready = time.monotonic() - t0
                    if world.samples(conn, proc.agent_id) > before:
                        break
                    time.sleep(0.01)
                else:
                    raise RuntimeError("no first sample within 60 s")
                first[label].append(time.monotonic() - t0)
                ready[label].append(t_ready if t_ready is not None else first[label][-1])
                say(f"start {i + 1}/{starts} ({label}): ready {ready[label][-1]:.2f} s, "
                    f"first sample delivered {first[label][-1]:.2f} s")
                stop(proc)
    return {label: {"ready_s": round(statistics.median(ready[label]), 3),
                    "first_sample_s": round(statistics.median(first[label]), 3),
                    "first_sample_runs_s": [round(x, 3) for x in first[label]],
                    "ready_runs_s": [round(x, 3) for x in ready[label]]} for label in variants}


# In-process costs, run in a child with the agent's PYTHONPATH so --agent-src measures that checkout.
COLLECTORS = r"""
import json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

def per_call(fn, n):
    errors = []
    t0, w0 = cpu(), time.perf_counter()
    for _ in range(n):
        try:
            fn()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
    return {"cpu_ms": round((cpu() - t0) / n * 1000, 3), "wall_ms": round((time.perf_counter() - w0) / n * 1000, 3),
            "calls": n, "error": errors[-1] if errors else None}

services = json.loads(sys.argv[1])
n = int(sys.argv[2])
out = {}
import msgspec
from rts_agent import collect
from rts_agent.collect import Collector, Sample
col = Collector(services)
for name, fn in list(col._collectors.items()):
    s = Sample(collected_at="x")
    if name == "cpu":
        time.sleep(0.2)  # the collector waits out a 0.1 s window only when called sooner
    out[name] = per_call(lambda fn=fn, s=s: fn(s), n if name not in ("services", "cpu") else max(5, n // 10))
out["whole sample"] = per_call(col.sample, max(5, n // 10))
units = [x + ".service" for x in services]
show = ["systemctl", "show", "--no-pager", "-p", "Id", "-p", "LoadState", "-p", "ActiveState", "-p", "MainPID",
        "--", *units]
listing = ["systemctl", "list-units", "--all", "--no-pager", "--output=json", "--", *units]
run = lambda argv: subprocess.run(argv, capture_output=True, check=False)
both = lambda: (run(listing), run(show))
out["services: systemctl list-units + show (2 processes)"] = per_call(both, max(5, n // 10))
out["services: systemctl show, batched (1 process)"] = per_call(lambda: run(show), max(5, n // 10))
try:
    from rts_agent import services as svc
except ImportError:
    svc = None
if svc is not None and os.environ.get("DBUS_SYSTEM_BUS_ADDRESS"):
    reader = svc.ServiceReader()
    first = reader.read(services)
    out["services: D-Bus (stand-in systemd)"] = per_call(lambda: reader.read(services), n)
    out["services: D-Bus (stand-in systemd)"]["path"] = reader.last_path
    out["services: D-Bus (stand-in systemd)"]["states"] = [s.status for s in first]
if hasattr(collect, "package_db_signature"):
    out["inventory check: package db stat"] = per_call(collect.package_db_signature, n)
out["inventory: read + digest"] = per_call(lambda: collect.inventory_digest(collect.inventory()[1]), 3)
from rts_agent.spool import Spool
body = msgspec.json.encode(col.sample())
with tempfile.TemporaryDirectory(dir=sys.argv[3]) as tmp:
    spool = Spool(Path(tmp) / "s.db", max_bytes=10**9)
    i = [0]
    def put_ack():
        i[0] += 1
        spool.put(f"2026-01-01T00:00:00.{i[0]:06d}Z", body)
        spool.ack([p.seq for p in spool.peek(500)])
    out["spool: put + ack of one sample (fsync)"] = per_call(put_ack, max(20, n // 2))
    spool.close()
out["sample_bytes"] = len(body)
import ssl
rss = lambda: int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
before = rss()
context = ssl.create_default_context()  # what an https server adds: the system's CA store
out["tls_context_rss_mib"] = round(rss() - before, 1)
print(json.dumps(out))
"""


@contextlib.contextmanager
def stand_in_systemd(tmp: Path) -> Any:
    """A private dbus-daemon with the tests' stand-in systemd on it; yields its address (or None)."""
    if shutil.which("dbus-daemon") is None or not FAKE_SYSTEMD.exists():
        yield None
        return
    sock = tmp / "bus.sock"
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={sock}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"unix:path={sock}"
    fake = None
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        fake = subprocess.Popen([sys.executable, str(FAKE_SYSTEMD), address, *SERVICES[:3]],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert fake.stdout is not None
        fake.stdout.readline()  # "ready"
        yield address
    finally:
        for p in (fake, daemon):
            if p is not None:
                p.terminate()
                p.wait(timeout=10)


def measure_collectors(env: dict[str, str], calls: int, tmp: Path) -> dict[str, Any]:
    with stand_in_systemd(tmp) as bus:
        run_env = {**env, **({"DBUS_SYSTEM_BUS_ADDRESS": bus} if bus else {})}
        out = subprocess.run([sys.executable, "-c", COLLECTORS, json.dumps(SERVICES), str(calls), str(tmp)],
                             env=run_env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"collector measurement failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout))


# -- main -----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 windows of 30 s, 3 starts (about 3 minutes)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per measured window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="calls per cheap collector (fewer for slow ones)")
    parser.add_argument("--agent-src", type=Path, help="run the agent from this src directory (PYTHONPATH)")
    parser.add_argument("--label", default="now")
    parser.add_argument("--baseline-src", type=Path,
                        help="also run this src directory's agent, side by side in the same windows")
    parser.add_argument("--baseline-label", default="before")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.window, args.windows, args.starts, args.calls = 30.0, 3, 3, 60
    agent_env = {**os.environ, "RTS_AGENT_LOG_FORMAT": "json"}
    agent_env.pop("RTS_AGENT_STATE_DIR", None)

    def source(src: Path | None) -> dict[str, str]:
        return {"PYTHONPATH": str(src.resolve()) + os.pathsep + agent_env.get("PYTHONPATH", "")} if src else {}

    # label -> what its agents' environment adds (the agent's source on PYTHONPATH)
    variants = {args.label: source(args.agent_src)}
    if args.baseline_src:
        variants[args.baseline_label] = source(args.baseline_src)
    server_url = resolve_database_url(Settings.from_env())
    db_name = f"rts_bench_footprint_{os.getpid()}"  # not `name`: the agents' loop below reuses that
    secret = "bench-" + secrets.token_urlsafe(24)
    url = create_db(server_url, db_name)
    procs: list[Proc] = []
    server = None
    try:
        say(f"migrating {db_name}")
        migrations.migrate(url)
        with tempfile.TemporaryDirectory(prefix="footprint-", dir=Path(__file__).parent) as tmp_name:
            tmp = Path(tmp_name)  # on the repository's disk: /tmp may be a tmpfs, which writes nothing
            server, base = start_api(url, tmp, {"RTS_JWT_SECRET": secret})
            world = World(url, base, secret, tmp, agent_env)
            versions = {label: subprocess.run(
                [sys.executable, "-c", "import rts_agent; print(rts_agent.__version__, rts_agent.__file__)"],
                env={**agent_env, **extra}, capture_output=True, text=True).stdout.strip()
                for label, extra in variants.items()}
            say("agents: " + "; ".join(f"{label}: {v}" for label, v in versions.items()))
            for label, extra in variants.items():
                for agent_name, env in AGENTS.items():
                    name = f"{label}: {agent_name}" if len(variants) > 1 else agent_name
                    procs.append(world.start(name, world.install(name), {**extra, **env}))
            for floor_name, code in FLOORS.items():
                procs.append(spawn(floor_name, [sys.executable, "-c", code], agent_env, tmp / "floor.log"))
            agents = [p for p in procs if p.agent_id]
            say("warming up until every agent delivered its first sample and its inventory ran")
            with psycopg.connect(url, autocommit=True) as conn:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not all(world.samples(conn, p.agent_id or "") for p in agents):
                    time.sleep(0.2)
            time.sleep(15)  # inventory runs a few seconds after start
            for proc in procs:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
            say(f"measuring {args.windows} windows of {args.window:.0f} s")
            measure_windows(procs, args.window, args.windows)
            steady = {p.name: summarize(p, whole_phase=p.name.endswith("300 s")) for p in procs}
            say(f"strace: fsync and write calls over {args.window:.0f} s")
            syscalls = strace_counts(agents, args.window, tmp)
            for proc in procs:
                stop(proc)
            say(f"start-up: {args.starts} starts")
            startup = measure_startup(world, args.starts, variants)
            collectors = {}
            for label, extra in variants.items():
                say(f"collectors ({label}): CPU per call, in process")
                collectors[label] = measure_collectors({**agent_env, **extra}, args.calls, tmp)
            apiprocess.stop(server)
            server = None
    finally:
        for proc in procs:
            stop(proc, signal.SIGKILL)
        if server is not None:
            apiprocess.stop(server)
        drop_db(server_url, db_name)
    report(steady, syscalls, startup, collectors)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "agents": versions,
        "window_s": args.window, "windows": args.windows, "starts": args.starts,
        "machine": f"{os.cpu_count()} cores shared with other work; CPU is the process's own CPU time",
        "steady": steady, "syscalls": syscalls, "startup": startup, "collectors": collectors,
    }, indent=2))
    say(f"wrote {args.out}")
    return 0


def report(steady: dict[str, Any], syscalls: dict[str, Any], startup: dict[str, Any],
           collectors: dict[str, Any]) -> None:
    print(f"\n{'process':<34} {'CPU s/min':>10} {'% core':>7} {'spread (windows)':>18} {'RSS MiB':>8} "
          f"{'peak':>6} {'disk B/h':>10} {'fsync/h':>8} {'wakes/min':>9}")
    for name, s in steady.items():
        windows = s["cpu_s_per_min_windows"]
        spread = f"{min(windows):.3f}-{max(windows):.3f}"
        fs = syscalls.get(name, {}).get("fsyncs_per_hour", "-")
        cpu = f"{s['cpu_s_per_min']:.3f}" + ("" if s["cpu_median_of_windows"] else "*")
        print(f"{name:<34} {cpu:>10} {s['cpu_pct_of_core']:>7.3f} {spread:>18} {s['rss_mib']:>8.1f} "
              f"{s['peak_rss_mib']:>6.1f} {s['write_bytes_per_hour']:>10} {fs!s:>8} "
              f"{s['context_switches_per_min']:>9.0f}")
    print("* over the whole phase (whole intervals), not the median window")
    labels = list(collectors)
    for label in labels:
        tls = collectors[label].get("tls_context_rss_mib", "?")
        print(f"\n{label}: start-up: ready {startup[label]['ready_s']:.2f} s, first sample in the server's database "
              f"{startup[label]['first_sample_s']:.2f} s (median of {len(startup[label]['first_sample_runs_s'])}); "
              f"an https server adds the TLS context (CA store): +{tls} MiB resident")
    print(f"\n{'collector (CPU ms per call)':<52} " + " ".join(f"{label:>10}" for label in labels) + "  note")
    names = list(dict.fromkeys(n for label in labels for n, c in collectors[label].items() if isinstance(c, dict)))
    for name in names:
        cells = [collectors[label].get(name) for label in labels]
        values = " ".join(f"{c['cpu_ms']:>10.3f}" if c else f"{'-':>10}" for c in cells)
        note = next((str(c.get("error") or c.get("path") or "") for c in cells if c), "")
        print(f"{name:<52} {values}  {note[:60]}")


if __name__ == "__main__":
    sys.exit(main())
