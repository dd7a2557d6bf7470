"""``rts-agent``: install (register + config + systemd unit), run (foreground), status.

Exit codes: 0 ok, 1 the server refused (bad token, …), 2 usage or local problem (a clear-text
server URL included), 3 ``status`` found no running agent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from rts_agent import __version__
from rts_agent.config import (
    CONFIG_NAME,
    PID_NAME,
    SPOOL_NAME,
    STATUS_NAME,
    AgentConfig,
    InsecureServer,
    NotInstalled,
    check_config_transport,
    check_transport,
    default_state_dir,
    ensure_state_dir,
    insecure_allowed,
    load,
    save,
)

# Each command imports what only it needs: ``run`` must not carry ``install``'s or ``status``'s
# modules in its resident memory for as long as it runs.

UNIT_NAME = "rts-agent.service"
UNIT_TEMPLATE = """[Unit]
Description=rts-monitor agent
Documentation=https://github.com/ (rts-monitor agent/README)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
Environment=RTS_AGENT_STATE_DIR={state_dir}
ExecStart={exe} run --state-dir {state_dir}
Restart=always
RestartSec=5
# SIGTERM lets the agent stop its loops; the spool keeps anything not yet sent.
KillMode=mixed
TimeoutStopSec=20
NoNewPrivileges=false

[Install]
WantedBy=multi-user.target
"""


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s %(extras)s"))
        handler.addFilter(_extras_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


_STD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "extras"}


def _extras_filter(record: logging.LogRecord) -> bool:
    record.extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STD)
    return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                               "level": record.levelname.lower(), "logger": record.name,
                               "event": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


# -- install ----------------------------------------------------------------------------------

async def _register(server: str, token: str) -> dict[str, Any]:
    import asyncio

    from rts_agent.collect import system_info
    from rts_agent.transport import new_client, register

    info = await asyncio.to_thread(system_info)
    async with new_client() as client:
        return await register(client, server, token, info)


def config_from_answer(server: str, answer: dict[str, Any], services: list[str]) -> AgentConfig:
    """The API contract shows the register answer flat and with a nested ``config``: accept both."""
    raw_nested = answer.get("config")
    nested: dict[str, Any] = raw_nested if isinstance(raw_nested, dict) else {}

    def pick(name: str, default: Any = None) -> Any:
        return answer.get(name, nested.get(name, default))

    return AgentConfig(
        server_url=server.rstrip("/"), agent_id=str(answer["agent_id"]), agent_token=str(answer["agent_token"]),
        business_id=pick("business_id"), service_location_id=pick("service_location_id"),
        websocket_url=pick("websocket_url"),
        heartbeat_interval_seconds=float(pick("heartbeat_interval_seconds", 300)),
        metrics_interval_seconds=float(pick("metrics_interval_seconds", 300)),
        monitored_services=services,
    )


def write_unit(unit_dir: Path, state_dir: Path, exe: str) -> Path:
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / UNIT_NAME
    path.write_text(UNIT_TEMPLATE.format(exe=exe, state_dir=state_dir))
    os.chmod(path, 0o644)
    return path


def _agent_executable() -> str:
    import shutil

    found = shutil.which("rts-agent")
    if found:
        return str(Path(found).resolve())
    return f"{sys.executable} -m rts_agent.cli"


def _token(args: argparse.Namespace) -> str:
    """The registration token from wherever it was given; the environment or a file keeps it out of
    process listings and shell history (install.sh passes it through the environment)."""
    if args.token_env:
        return os.environ.get(args.token_env, "").strip()
    if args.token_file:
        text = sys.stdin.read() if str(args.token_file) == "-" else args.token_file.read_text()
        return text.strip()
    return str(args.token or "").strip()


def cmd_install(args: argparse.Namespace) -> int:
    import asyncio
    import shutil
    import subprocess

    from rts_agent.transport import TransportError

    state_dir: Path = args.state_dir
    if (state_dir / CONFIG_NAME).exists() and not args.force:
        print(f"error: already installed ({state_dir / CONFIG_NAME}); use --force to register again",
              file=sys.stderr)
        return 2
    insecure = args.insecure or insecure_allowed(os.environ)
    try:
        check_transport(args.server, insecure=insecure)
    except InsecureServer as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    services = [s.strip() for s in (args.services or "").split(",") if s.strip()]
    token = _token(args)
    if not token:
        print("error: no registration token (empty --token, --token-env or --token-file)", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(_register(args.server, token))
    except TransportError as exc:
        print(f"error: registration failed: {exc}", file=sys.stderr)
        return 1
    ensure_state_dir(state_dir)
    config = config_from_answer(args.server, answer, services)
    if args.insecure:  # an explicit choice on the command line lasts; the variable is per process
        config = msgspec.structs.replace(config, allow_insecure=True)
    try:
        check_config_transport(config, insecure=insecure)
    except InsecureServer as exc:  # the server answered a clear-text WebSocket URL
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = save(config, state_dir)
    print(f"registered agent {config.agent_id}; config written to {path} (0600)")
    unit_dir = args.unit_dir
    if unit_dir is None and not args.no_systemd and os.name != "nt" and os.geteuid() == 0 \
            and Path("/run/systemd/system").is_dir():
        unit_dir = Path("/etc/systemd/system")
    if unit_dir is not None and not args.no_systemd:
        unit = write_unit(unit_dir, state_dir, _agent_executable())
        print(f"systemd unit written to {unit}")
        if not args.no_start and Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
            for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT_NAME]):
                subprocess.run(argv, check=False)
            print("service enabled and started: systemctl status rts-agent")
    elif not args.no_systemd:
        print("no systemd here: run `rts-agent run` under your service manager")
    return 0


# -- run / status -----------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from rts_agent.runner import Runner

    try:
        config = load(args.state_dir)
    except NotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.interval:
        config = msgspec.structs.replace(config, metrics_interval_seconds=args.interval)
    try:
        check_config_transport(config, insecure=args.insecure or insecure_allowed(os.environ))
    except InsecureServer as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lock = _single_instance(args.state_dir)
    if lock is None:
        print(f"error: an agent is already running with state dir {args.state_dir}", file=sys.stderr)
        return 2
    try:
        runner = Runner(config, args.state_dir)
        asyncio.run(runner.run())
    finally:
        os.close(lock)
    if runner.restart_requested:
        _reexec()
    return 0


def _reexec() -> None:
    """Become the newly installed version: same PID and arguments, fresh interpreter and imports."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "rts_agent.cli", *sys.argv[1:]])


def _single_instance(state_dir: Path) -> int | None:
    """An exclusive lock on ``agent.lock``: two runners on one spool would run commands twice.

    The kernel drops the lock when the process dies, however it dies (no stale lock files).
    """
    fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    if os.name == "nt":  # pragma: no cover - Windows: msvcrt locking, untested
        import importlib

        msvcrt: Any = importlib.import_module("msvcrt")
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(fd)
            return None
        return fd
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(state_dir: Path) -> dict[str, Any]:
    """What ``status`` prints: the runner's last status file plus live checks."""
    import sqlite3

    from rts_agent.spool import open_readonly_stats

    out: dict[str, Any] = {"state_dir": str(state_dir), "installed": (state_dir / CONFIG_NAME).exists(),
                           "installed_version": __version__}
    pid_path = state_dir / PID_NAME
    pid = int(pid_path.read_text().strip()) if pid_path.exists() else None
    out["running"] = bool(pid and _alive(pid))
    out["pid"] = pid if out["running"] else None
    status_path = state_dir / STATUS_NAME
    # Not written yet, or emptied by a power cut (it is not fsync'd): no last status then.
    with contextlib.suppress(OSError, ValueError):
        out["last_status"] = json.loads(status_path.read_text())
    try:
        stats = open_readonly_stats(state_dir / SPOOL_NAME)
    except sqlite3.Error as exc:  # status must still answer (in JSON) while the spool is unreadable
        out["spool_error"] = str(exc)
        stats = None
    if stats is not None:
        out["spool"] = {"depth": stats.depth, "bytes": stats.bytes, "oldest": stats.oldest,
                        "spooled_total": stats.spooled_total,
                        "newest": stats.newest, "sent_total": stats.sent_total,
                        "dropped_total": stats.dropped_total, "dropped_unreported": stats.dropped_unreported,
                        "quarantined_total": stats.quarantined_total, "pending_results": stats.pending_results}
    return out


def cmd_status(args: argparse.Namespace) -> int:
    status = read_status(args.state_dir)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0 if status["running"] else 3
    last = status.get("last_status", {})
    spool = status.get("spool", {})
    rows = [
        ("state dir", status["state_dir"]),
        ("installed", status["installed"]),
        ("running", f"yes (pid {status['pid']}, version {last.get('version', '?')})" if status["running"] else "no"),
        ("installed version", status["installed_version"]),
        ("agent id", last.get("agent_id", "-")),
        ("server", last.get("server_url", "-")),
        ("websocket", last.get("websocket", "-")),
        ("monitoring", "on" if last.get("monitoring_enabled", True) else "paused from the portal"),
        ("last sample", last.get("last_sample_at", "-")),
        ("last send ok", last.get("last_send_ok_at", "-")),
        ("last send error", last.get("last_send_error") or "-"),
        ("spool", f"{spool.get('depth', 0)} samples, {spool.get('bytes', 0)} bytes "
                  f"(oldest {spool.get('oldest') or '-'})"),
        ("sent / dropped", f"{spool.get('sent_total', 0)} / {spool.get('dropped_total', 0)} "
                           f"({spool.get('dropped_unreported', 0)} not yet reported)"),
        ("commands run", last.get("commands_executed", 0)),
        ("inventory", f"{last.get('inventory_packages') or '-'} packages, sent {last.get('inventory_sent_at') or '-'}"),
        ("collector errors", last.get("collector_errors") or "-"),
    ]
    for key, value in rows:
        print(f"{key:<18} {value}")
    return 0 if status["running"] else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rts-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rts-agent {__version__}")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="config, spool and status (default: $RTS_AGENT_STATE_DIR, /var/lib/rts-agent as root)")
    parser.add_argument("--log-level", default=os.environ.get("RTS_AGENT_LOG_LEVEL", "INFO"))
    parser.add_argument("--log-format", default=os.environ.get("RTS_AGENT_LOG_FORMAT", "text"),
                        choices=["text", "json"])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="register with a one-time AGT-… token, write config and systemd unit")
    p.add_argument("--server", required=True, help="base URL of the rts-monitor API, e.g. https://api.example.com")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--token", help="registration token AGT-… (visible in process listings: prefer the others)")
    given.add_argument("--token-env", metavar="NAME", help="read the registration token from this environment variable")
    given.add_argument("--token-file", metavar="PATH", type=Path,
                       help="read the registration token from this file (- for standard input)")
    p.add_argument("--services", help="comma-separated services to monitor (e.g. nginx,postgresql)")
    p.add_argument("--unit-dir", type=Path, help="write the systemd unit here (default /etc/systemd/system as root)")
    p.add_argument("--no-systemd", action="store_true", help="do not write a systemd unit")
    p.add_argument("--no-start", action="store_true", help="write the unit but do not enable/start it")
    p.add_argument("--force", action="store_true", help="register again over an existing install")
    p.add_argument("--insecure", action="store_true",
                   help="accept a plain http:// server that is not loopback (kept in the config; "
                        "also RTS_AGENT_INSECURE=1)")
    p.set_defaults(func=cmd_install)
    p = sub.add_parser("run", help="run the agent in the foreground")
    p.add_argument("--interval", type=float, help="override the metrics interval (seconds)")
    p.add_argument("--insecure", action="store_true",
                   help="accept a plain http:// or ws:// server that is not loopback (also RTS_AGENT_INSECURE=1)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="what the agent is doing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Per-subcommand flags may also be given before the subcommand: one default place.
    args.state_dir = (args.state_dir or default_state_dir()).expanduser()
    _setup_logging(args.log_level, args.log_format)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
