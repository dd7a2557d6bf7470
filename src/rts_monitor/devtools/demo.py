"""``rts-monitor demo``: a working MSP world on this machine, for a newcomer to look at.

Against ``DATABASE_URL`` or the local server (``rts-monitor db up`` route): migrate, start the
API + scheduler (``rts-monitor serve`` as a subprocess), create demo businesses, locations and
users with SQL (the portal owns those tables), mint an admin token, create registration tokens
and alert rules through the API, start one real ``rts-agent`` on this machine (state under
``<state dir>/demo/agent``, no systemd) and a simulated fleet registering through the same API.
Prints where to look, then runs until Ctrl-C (or ``--duration`` seconds).

A second run reuses the demo world, the real agent and the fleet's credentials (kept in
``<state dir>/demo``), so history keeps growing across runs; ``--fresh`` registers a new fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import httpx
import psycopg
from psycopg.rows import dict_row

from rts_monitor.auth import portal
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import apiprocess, localdb
from rts_monitor.devtools.demo_fleet import Fleet, SimDevice, build_fleet

BUSINESSES: list[tuple[str, list[str]]] = [
    ("Acme Dental Group", ["Main Clinic", "Northside Clinic"]),
    ("Bayside Logistics", ["Warehouse 1", "Head Office"]),
    ("Cobalt Legal LLP", ["Downtown Office"]),
    ("Delta Pediatrics", ["Clinic", "Billing Office"]),
    ("Evergreen Realty", ["Main Office"]),
    ("Foxglove Brewing Co", ["Brewery", "Taproom"]),
    ("Granite Accounting", ["Office"]),
    ("Harbor Veterinary", ["Hospital"]),
]
DEMO_PREFIX = "Demo: "
# The starter rules every demo business gets (created through the alert rules API).
DEFAULT_RULES: list[dict[str, Any]] = [
    {"alert_name": "CPU high", "severity": "warning", "alert_type": "cpu_high",
     "conditions": {"metric": "cpu_percent", "operator": ">", "threshold": 90, "duration_minutes": 2}},
    # Disks fill slowly and do not spike: one sample over the line is enough.
    {"alert_name": "Disk almost full", "severity": "critical", "alert_type": "disk_full",
     "conditions": {"metric": "disk_percent", "operator": ">", "threshold": 90, "duration_minutes": 0}},
    {"alert_name": "Memory pressure", "severity": "warning", "alert_type": "memory_high",
     "conditions": {"metric": "memory_percent", "operator": ">", "threshold": 95, "duration_minutes": 1}},
    {"alert_name": "Agent offline", "severity": "critical", "alert_type": "agent_offline",
     "conditions": {"kind": "agent_offline", "duration_minutes": 5}},
    {"alert_name": "nginx down", "severity": "critical", "alert_type": "service_down",
     "conditions": {"kind": "service_down", "service_name": "nginx", "duration_minutes": 1}},
]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run the API, a real agent and a simulated fleet (newcomer demo)")
    p.add_argument("--fleet", type=int, default=200, help="simulated agents (default 200)")
    p.add_argument("--duration", type=float, default=0, help="stop after N seconds (default: until Ctrl-C)")
    p.add_argument("--interval", type=float, default=10, help="seconds between samples per agent (default 10)")
    p.add_argument("--port", type=int, help="API port (default RTS_PORT, 8080)")
    p.add_argument("--businesses", type=int, default=5, help=f"demo businesses, 1..{len(BUSINESSES)}")
    p.add_argument("--backfill-hours", type=float, default=6,
                   help="history each simulated agent uploads at start (5-minute samples; 0: none)")
    p.add_argument("--no-agent", action="store_true", help="do not start the real rts-agent")
    p.add_argument("--fresh", action="store_true", help="register a new simulated fleet")
    p.set_defaults(func=run)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The command: every step in order; the API and the agent are stopped whatever happens."""
    if args.fleet < 0 or not 1 <= args.businesses <= len(BUSINESSES) or args.interval <= 0:
        print(f"error: --fleet >= 0, --businesses 1..{len(BUSINESSES)}, --interval > 0", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the guide
    demo_dir = settings.state_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    url = _database(settings)
    port = args.port or settings.port
    if not localdb.port_free(port):
        print(f"error: port {port} is in use; pass --port N", file=sys.stderr)
        return 2
    # the demo is a development server: secrets it is not given are generated in the state dir
    env = "development" if settings.production else settings.env
    settings = settings.with_(env=env)
    settings = settings.with_(database_url=url, jwt_secret=settings.effective_jwt_secret(),
                              webhook_secret=settings.effective_webhook_secret(), port=port, host="127.0.0.1")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = _start_server(settings, demo_dir, args.interval)
        procs.append(server)
        base = settings.effective_public_url
        world = _create_world(url, args.businesses)
        admin = portal.mint(settings, role="admin", user_id=world["admin_id"], ttl_seconds=12 * 3600)
        _ensure_rules(base, admin, world["businesses"])
        agent_proc, agent_id = (None, None) if args.no_agent else _start_agent(
            base, admin, url, world, demo_dir, args.interval)
        if agent_proc is not None:
            procs.append(agent_proc)
        devices = build_fleet(args.fleet, [(str(b), [str(x) for x in locs]) for b, locs in world["businesses"]])
        world["password"] = _console_password(url, world, demo_dir)
        _print_guide(settings, base, admin, world, agent_id, args, demo_dir)
        return asyncio.run(_run_fleet(base, admin, url, devices, args, demo_dir, server, agent_proc, agent_id))
    finally:
        for proc in reversed(procs):
            apiprocess.stop(proc)
        say("stopped (the database keeps the data; run `rts-monitor demo` again to continue)")


def _database(settings: Settings) -> str:
    from rts_monitor.db import migrations

    if settings.database_url:
        url = settings.database_url
        say("database: DATABASE_URL")
    else:
        say("database: the local server (rts-monitor db up)")
        url = localdb.up(settings)
    result = migrations.migrate(url)
    say(f"migrations: edition={result.edition} applied={len(result.applied)} unchanged={result.unchanged}")
    return url


def _start_server(settings: Settings, demo_dir: Path, interval: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url, "RTS_JWT_SECRET": settings.jwt_secret, "RTS_ENV": settings.env,
        "RTS_WEBHOOK_SECRET": settings.webhook_secret,
        "RTS_HOST": settings.host, "RTS_PORT": str(settings.port), "RTS_STATE_DIR": str(settings.state_dir),
        "RTS_LOG_FORMAT": "json",
        # Demo pace: agents report every few seconds and rules are evaluated often, so an
        # alert opens within minutes instead of the production 5-minute cadence.
        "RTS_METRICS_INTERVAL_SECONDS": str(max(1, round(interval))),
        "RTS_HEARTBEAT_INTERVAL_SECONDS": "30",
        "RTS_ALERT_EVALUATE_SECONDS": os.environ.get("RTS_ALERT_EVALUATE_SECONDS", "10"),
    }
    log_path = demo_dir / "server.log"
    say(f"starting the API on {settings.effective_public_url} (log: {log_path})")
    proc = apiprocess.spawn(env, log_path, append=True)
    try:
        apiprocess.wait_healthy(proc, settings.effective_public_url, 60)
    except apiprocess.ApiStartError as exc:
        apiprocess.stop(proc)
        raise SystemExit(f"error: the API {exc}; see {log_path}") from None
    return proc


def _create_world(url: str, count: int) -> dict[str, Any]:
    """Demo businesses, locations and users: found by name if a previous run made them."""
    businesses: list[tuple[UUID, list[UUID]]] = []
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for name, locations in BUSINESSES[:count]:
            full = DEMO_PREFIX + name
            row = conn.execute("SELECT id FROM businesses WHERE business_name = %s AND NOT soft_delete "
                               "ORDER BY created_at LIMIT 1", (full,)).fetchone()
            if row is None:
                row = conn.execute("INSERT INTO businesses (business_name) VALUES (%s) RETURNING id",
                                   (full,)).fetchone()
            assert row is not None
            loc_ids = []
            for i, loc in enumerate(locations):
                found = conn.execute("SELECT id FROM service_locations WHERE business_id = %s AND location_name = %s",
                                     (row["id"], loc)).fetchone()
                if found is None:
                    found = conn.execute(
                        "INSERT INTO service_locations (business_id, location_name, is_headquarters, city) "
                        "VALUES (%s, %s, %s, 'Springfield') RETURNING id", (row["id"], loc, i == 0)).fetchone()
                assert found is not None
                loc_ids.append(found["id"])
            businesses.append((row["id"], loc_ids))
        admin_id = _user(conn, "demo-admin@msp.example", "admin", None)
        approver_id = _user(conn, "demo-approver@msp.example", "admin", None)
        customer_id = _user(conn, "owner@acme-dental.example", "customer", businesses[0][0])
    say(f"demo world: {len(businesses)} businesses, {sum(len(b[1]) for b in businesses)} locations, "
        "2 admins, 1 customer")
    return {"businesses": businesses, "admin_id": admin_id, "approver_id": approver_id,
            "customer_id": customer_id}


def _console_password(url: str, world: dict[str, Any], demo_dir: Path) -> str:
    """A password for the demo users' e-mail sign-in to the console (bcrypt, as the portal stores
    it), generated once and kept in the demo directory."""
    import bcrypt

    path = demo_dir / "console_password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(12))
    password = path.read_text().strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE users SET password_hash = %s WHERE id = ANY(%s)",
                     (hashed, [world["admin_id"], world["customer_id"]]))
    return password


def _user(conn: psycopg.Connection[dict[str, Any]], email: str, role: str, business_id: UUID | None) -> UUID:
    row = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()
    if row is None:
        row = conn.execute("INSERT INTO users (email, username, role, business_id) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", (email, email.split("@")[0], role, business_id)).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def _ensure_rules(base: str, admin: str, businesses: list[tuple[UUID, list[UUID]]]) -> None:
    """The starter alert rules per business, through the rules API (skipped where present)."""
    headers = {"Authorization": f"Bearer {admin}"}
    created = 0
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for business_id, _ in businesses:
            resp = http.get("/api/alerts/rules", params={"business_id": str(business_id)})
            if resp.status_code == 404:
                say("alert rules API not available: skipping rules")
                return
            resp.raise_for_status()
            body = resp.json()
            items = body.get("rules", body) if isinstance(body, dict) else body
            have = {r.get("alert_name") for r in items} if isinstance(items, list) else set()
            for rule in DEFAULT_RULES:
                if rule["alert_name"] in have:
                    continue
                r = http.post("/api/alerts/rules", json={**rule, "business_id": str(business_id)})
                if r.status_code >= 400:
                    say(f"rule {rule['alert_name']!r} refused: {r.status_code} {r.text[:200]}")
                    continue
                created += 1
    say(f"alert rules: {len(DEFAULT_RULES)} per business ({created} created now)")


def _registration_token(base: str, admin: str, business_id: UUID, location_id: UUID | None, name: str) -> str:
    resp = httpx.post(base + "/api/agents/registration-tokens", headers={"Authorization": f"Bearer {admin}"},
                      json={"business_id": str(business_id),
                            "service_location_id": str(location_id) if location_id else None,
                            "device_name": name, "expires_in_hours": 1}, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["token"])


def _token_valid(url: str, agent_id: str, token: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM agent_devices WHERE id = %s AND agent_token_hash = %s AND agent_token_revoked_at IS NULL "
            "AND NOT soft_delete", (agent_id, hashlib.sha256(token.encode()).hexdigest())).fetchone()
    return row is not None


def _start_agent(base: str, admin: str, url: str, world: dict[str, Any], demo_dir: Path,
                 interval: float) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    """Install (once) and run the real rts-agent on this machine, as a child process."""
    if importlib.util.find_spec("rts_agent") is None:
        say("rts-agent is not installed (pip install -e agent): skipping the real agent")
        return None, None
    state = demo_dir / "agent"
    cli = [sys.executable, "-m", "rts_agent.cli", "--state-dir", str(state)]
    config_path = state / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else None
    if config is None or config.get("server_url") != base or not _token_valid(url, config["agent_id"],
                                                                               config["agent_token"]):
        business_id, locations = world["businesses"][0]
        token = _registration_token(base, admin, business_id, locations[0], f"this machine ({socket.gethostname()})")
        out = subprocess.run([*cli, "install", "--server", base, "--token", token, "--no-systemd", "--force",
                              "--services", "ssh,cron"], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            say(f"rts-agent install failed: {out.stderr.strip()[:300]}")
            return None, None
        config = json.loads(config_path.read_text())
        say(f"real agent installed: {config['agent_id']} (state: {state})")
    env = {**os.environ, "RTS_AGENT_METRICS_INTERVAL": str(interval), "RTS_AGENT_HEARTBEAT_INTERVAL": "30",
           "RTS_AGENT_POLL_INTERVAL": "15", "RTS_AGENT_LOG_FORMAT": "json"}
    log = open(demo_dir / "agent.log", "ab")  # noqa: SIM115 - the child keeps writing
    proc = subprocess.Popen([*cli, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    say(f"real agent running (pid {proc.pid}, log: {demo_dir / 'agent.log'})")
    return proc, str(config["agent_id"])


def _read_saved(path: Path) -> dict[str, dict[str, str]]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


async def _retire_saved_fleet(session: aiohttp.ClientSession, base: str, admin: str, path: Path) -> None:
    """``--fresh``: delete the previous run's simulated agents through the API (soft delete and
    token revocation), so they do not linger as offline devices raising offline alerts."""
    saved = _read_saved(path)
    headers = {"Authorization": f"Bearer {admin}"}
    for cred in saved.values():
        async with session.delete(f"{base}/api/agents/{cred['agent_id']}", headers=headers) as resp:
            if resp.status not in (204, 404):
                say(f"could not delete old simulated agent {cred['agent_id']}: {resp.status}")
    _save_credentials(path, [])
    if saved:
        say(f"--fresh: deleted the {len(saved)} simulated agents of the previous run")


def _load_credentials(path: Path, url: str, devices: list[SimDevice]) -> None:
    saved = {int(k): v for k, v in _read_saved(path).items()}
    if not saved:
        return
    ids = [saved[d.index]["agent_id"] for d in devices if d.index in saved]
    with psycopg.connect(url, autocommit=True) as conn:
        live = {str(r[0]) + ":" + str(r[1]) for r in conn.execute(
            "SELECT id, agent_token_hash FROM agent_devices WHERE id = ANY(%s::uuid[]) "
            "AND agent_token_revoked_at IS NULL AND NOT soft_delete", (ids,)).fetchall()}
    for d in devices:
        cred = saved.get(d.index)
        if cred and f"{cred['agent_id']}:{hashlib.sha256(cred['token'].encode()).hexdigest()}" in live:
            d.agent_id, d.token = cred["agent_id"], cred["token"]


def _save_credentials(path: Path, devices: list[SimDevice]) -> None:
    data = json.dumps({d.index: {"agent_id": d.agent_id, "token": d.token} for d in devices if d.token})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)


async def _run_fleet(base: str, admin: str, url: str, devices: list[SimDevice], args: argparse.Namespace,
                     demo_dir: Path, server: subprocess.Popen[bytes],
                     agent: subprocess.Popen[bytes] | None, agent_id: str | None) -> int:
    creds = demo_dir / "fleet.json"
    fleet = Fleet(base, devices, interval=args.interval, heartbeat=30, backfill_hours=args.backfill_hours)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        if args.fresh:
            await _retire_saved_fleet(session, base, admin, creds)
        _load_credentials(creds, url, devices)
        missing = sum(1 for d in devices if d.token is None)
        if missing:
            say(f"registering {missing} simulated agents through the API ...")
            await fleet.register(session, admin)
            _save_credentials(creds, devices)
        say(f"simulated fleet: {len(devices)} agents reporting every {args.interval:g}s "
            f"(backfilling {args.backfill_hours:g} h of history first). Ctrl-C to stop.")
        runner = asyncio.create_task(fleet.run(session))
        every = 30.0 if not args.duration else max(5.0, min(30.0, args.duration / 4))
        while not stop.is_set():
            remaining = args.duration - (time.monotonic() - started) if args.duration else every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, min(every, remaining)))
            if server.poll() is not None:
                say(f"the API exited ({server.returncode}); see {demo_dir / 'server.log'}")
                break
            _progress(url, fleet, agent, agent_id, devices, time.monotonic() - started)
            if args.duration and time.monotonic() - started >= args.duration:
                break
        fleet.stop()
        await runner
    ok = server.poll() is None and (fleet.stats.samples > 0 or not devices)
    return 0 if ok else 1


def _progress(url: str, fleet: Fleet, agent: subprocess.Popen[bytes] | None, agent_id: str | None,
              devices: list[SimDevice], elapsed: float) -> None:
    ids = [d.agent_id for d in devices if d.agent_id]
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'active') AS open, count(*) AS total "
            "FROM agent_alert_history WHERE triggered_at > now() - interval '1 day' "
            "AND agent_device_id = ANY(%s::uuid[])", ([*ids, *([agent_id] if agent_id else [])],)).fetchone()
        online = conn.execute("SELECT count(*) FROM agent_devices WHERE status = 'online' AND id = ANY(%s::uuid[])",
                              (ids,)).fetchone()
    open_alerts, total = (row[0], row[1]) if row else (0, 0)
    agent_state = "running" if agent is not None and agent.poll() is None else "not running"
    s = fleet.stats
    say(f"t+{elapsed:5.0f}s  samples sent {s.samples:>8}  errors {s.errors:>4}  fleet online "
        f"{online[0] if online else 0}/{len(devices)}  open alerts {open_alerts} (24 h: {total})  "
        f"real agent {agent_state}" + (f"  last error: {s.last_error}" if s.last_error else ""))


def _print_guide(settings: Settings, base: str, admin: str, world: dict[str, Any], agent_id: str | None,
                 args: argparse.Namespace, demo_dir: Path) -> None:
    customer = portal.mint(settings, role="customer", user_id=world["customer_id"],
                           business_id=world["businesses"][0][0], ttl_seconds=12 * 3600)
    token_file = demo_dir / "admin_token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(admin)
    me = agent_id or "<agent-id>"
    lines = [
        "",
        "=" * 78,
        " rts-monitor demo is running",
        "=" * 78,
        f" Console        {base}/console/   one-click sign-in (12 h):",
        f"   MSP admin    {base}/console/auth?token={admin}",
        f"   customer     {base}/console/auth?token={customer}",
        f"   or e-mail + password: demo-admin@msp.example / owner@acme-dental.example, password {world['password']}",
        f" API            {base}/api        health: {base}/health",
        f" API docs       {base}/schema (OpenAPI: {base}/schema/openapi.json)",
        f" admin token    (12 h, also in {token_file})",
        f"   {admin}",
        " customer token (Acme Dental only: other businesses' agents are 404)",
        f"   {customer}",
        f" real agent     {me}   status: rts-agent --state-dir {demo_dir / 'agent'} status",
        f" logs           {demo_dir / 'server.log'}, {demo_dir / 'agent.log'}",
        "",
        " Try:",
        f'   export TOKEN=$(cat {token_file})',
        f'   curl -s -H "Authorization: Bearer $TOKEN" {base}/api/agents?limit=5',
        f'   curl -s -H "Authorization: Bearer $TOKEN" {base}/api/agents/{me}',
        f'   curl -s -H "Authorization: Bearer $TOKEN" "{base}/api/agents/{me}/metrics/history?interval=1m"',
        f'   curl -s -H "Authorization: Bearer $TOKEN" {base}/api/agents/{me}/inventory',
        f'   curl -s -H "Authorization: Bearer $TOKEN" "{base}/api/alerts?status=active"',
        '   curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\',
        f'        -d \'{{"command_type":"collect_inventory","params":{{}}}}\' {base}/api/agents/{me}/commands',
        "",
        " Alerts: about 1 simulated agent in 25 is troubled (pegged CPU, full disk, memory leak,",
        " flapping nginx); rules are evaluated every 10 s, so alerts open within a few minutes.",
        "=" * 78,
        "",
    ]
    print("\n".join(lines), flush=True)
