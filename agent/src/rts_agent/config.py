"""The agent's configuration and where it lives on disk.

``install`` writes ``config.json`` once (server URL, agent id, agent token, intervals the server
handed out); ``run`` reads it. The file holds the agent's credential, so it is created 0600 in a
0700 state directory and only ever rewritten atomically (temp file + rename), never left half
written by a crash. Every tunable can be overridden at run time by an ``RTS_AGENT_*`` variable,
which is how tests and the demo run agents with second-scale intervals.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

CONFIG_NAME = "config.json"
SPOOL_NAME = "spool.db"
STATUS_NAME = "status.json"
PID_NAME = "agent.pid"


class AgentConfig(msgspec.Struct, kw_only=True):
    """Everything ``rts-agent run`` needs; persisted as JSON in the state directory."""

    server_url: str
    agent_id: str
    agent_token: str
    business_id: str | None = None
    service_location_id: str | None = None
    websocket_url: str | None = None
    heartbeat_interval_seconds: float = 300.0
    metrics_interval_seconds: float = 300.0
    # From the server (PATCH monitoring_enabled): False pauses metric collection; heartbeats,
    # commands and the delivery of samples already spooled go on.
    monitoring_enabled: bool = True
    # Agent-side knobs (not from the server).
    poll_interval_seconds: float = 60.0
    inventory_interval_seconds: float = 3600.0
    send_batch_size: int = 500
    catchup_pause_seconds: float = 0.25
    spool_max_bytes: int = 64 * 1024 * 1024
    monitored_services: list[str] = msgspec.field(default_factory=list)
    output_cap_bytes: int = 64 * 1024
    # Longest wait between reconnect/resend attempts (exponential backoff with jitter up to it).
    retry_cap_seconds: float = 60.0
    # ``install --insecure``: the operator accepted plain HTTP to a non-loopback server; kept so
    # the service that runs ``rts-agent run`` later does not refuse what was chosen at install.
    allow_insecure: bool = False

    @property
    def api_url(self) -> str:
        return self.server_url.rstrip("/") + "/api"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint: what registration returned, else derived from the server URL."""
        if self.websocket_url:
            return self.websocket_url
        base = self.server_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base[len("https://"):] + "/ws"
        if base.startswith("http://"):
            return "ws://" + base[len("http://"):] + "/ws"
        return base + "/ws"


# Run-time overrides: variable -> (field, type).
_OVERRIDES: dict[str, tuple[str, type]] = {
    "RTS_AGENT_SERVER_URL": ("server_url", str),
    "RTS_AGENT_WEBSOCKET_URL": ("websocket_url", str),
    "RTS_AGENT_METRICS_INTERVAL": ("metrics_interval_seconds", float),
    "RTS_AGENT_HEARTBEAT_INTERVAL": ("heartbeat_interval_seconds", float),
    "RTS_AGENT_POLL_INTERVAL": ("poll_interval_seconds", float),
    "RTS_AGENT_INVENTORY_INTERVAL": ("inventory_interval_seconds", float),
    "RTS_AGENT_BATCH_SIZE": ("send_batch_size", int),
    "RTS_AGENT_CATCHUP_PAUSE": ("catchup_pause_seconds", float),
    "RTS_AGENT_SPOOL_MAX_BYTES": ("spool_max_bytes", int),
    "RTS_AGENT_OUTPUT_CAP_BYTES": ("output_cap_bytes", int),
    "RTS_AGENT_RETRY_CAP": ("retry_cap_seconds", float),
}


class InsecureServer(ValueError):
    """A server URL the agent will not use: plain HTTP/WS to a host that is not loopback."""


def insecure_allowed(environ: Any) -> bool:
    return str(environ.get("RTS_AGENT_INSECURE", "")).strip().lower() in ("1", "true", "yes")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def check_transport(url: str, *, insecure: bool, what: str = "server URL") -> None:
    """Refuse a URL that would send the agent token and the machine's data in clear text.

    The token is a bearer credential: anyone on the path who reads it can act as this machine
    and read the commands sent to it, so plain ``http``/``ws`` is accepted only to a loopback
    host (a local proxy or a test server) or when the operator said ``--insecure``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("https", "wss"):
        return
    if scheme not in ("http", "ws"):
        raise InsecureServer(f"{what} {url!r}: use an https:// (or wss://) URL")
    if insecure or _is_loopback(parts.hostname or ""):
        return
    raise InsecureServer(
        f"{what} {url!r} is not TLS: the agent token would cross the network in clear text. "
        f"Use https://, or pass --insecure (or set RTS_AGENT_INSECURE=1) to accept the risk")


def check_config_transport(config: AgentConfig, *, insecure: bool) -> None:
    """Both URLs a running agent talks to: the API and the WebSocket."""
    insecure = insecure or config.allow_insecure
    check_transport(config.server_url, insecure=insecure)
    check_transport(config.ws_url, insecure=insecure, what="WebSocket URL")


def default_state_dir() -> Path:
    """``$RTS_AGENT_STATE_DIR``, else the system location as root, else the user's state dir."""
    env = os.environ.get("RTS_AGENT_STATE_DIR")
    if env:
        return Path(env).expanduser()
    if os.name == "nt":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "rts-agent"
    if os.geteuid() == 0:
        return Path("/var/lib/rts-agent")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "rts-agent"


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the state directory readable only by this user (it holds the token and spool)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if os.name != "nt":
        os.chmod(state_dir, 0o700)
    return state_dir


def write_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600 from the first byte on disk.

    ``durable=False`` skips the fsync: for a view rewritten from memory anyway (the status
    file). A process crash still leaves the old or the new file whole; a power cut may leave an
    empty one, which its reader must take as "no file".
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one writer per process at a time
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if os.name != "nt":
            os.fchmod(fd, 0o600)  # an older leftover of the same name kept its mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(config: AgentConfig, state_dir: Path) -> Path:
    ensure_state_dir(state_dir)
    path = state_dir / CONFIG_NAME
    write_private(path, msgspec.json.format(msgspec.json.encode(config)))
    return path


class NotInstalled(RuntimeError):
    """No config in the state directory: ``rts-agent install`` has not been run."""


def load(state_dir: Path, environ: dict[str, str] | None = None) -> AgentConfig:
    """The saved config with ``RTS_AGENT_*`` overrides applied."""
    path = state_dir / CONFIG_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotInstalled(f"no agent config at {path}: run `rts-agent install` first") from None
    config = msgspec.json.decode(raw, type=AgentConfig)
    return apply_overrides(config, os.environ if environ is None else environ)


def overridden_fields(environ: Any) -> set[str]:
    """Fields an ``RTS_AGENT_*`` variable pins: server-pushed config must not change them."""
    out = {name for var, (name, _) in _OVERRIDES.items() if environ.get(var)}
    if environ.get("RTS_AGENT_SERVICES") is not None:
        out.add("monitored_services")
    return out


def load_raw(state_dir: Path) -> AgentConfig:
    """The saved config exactly as on disk (no overrides): what an update rewrites."""
    return msgspec.json.decode((state_dir / CONFIG_NAME).read_bytes(), type=AgentConfig)


def apply_overrides(config: AgentConfig, environ: Any) -> AgentConfig:
    changes: dict[str, Any] = {}
    for var, (name, kind) in _OVERRIDES.items():
        value = environ.get(var)
        if value:
            changes[name] = kind(value)
    services = environ.get("RTS_AGENT_SERVICES")
    if services is not None:
        changes["monitored_services"] = [s.strip() for s in services.split(",") if s.strip()]
    return msgspec.structs.replace(config, **changes) if changes else config
