"""Settings from environment variables, each with a documented default.

One frozen object is built at start-up (``Settings.from_env()``) and passed down explicitly, so a
test can run two servers with different settings in one process tree. ``rts-monitor config``
prints the table of variables below; the README links to it.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _env(name: str, doc: str) -> dict[str, Any]:
    return {"env": name, "doc": doc}


def _project_root() -> Path | None:
    """The checkout this package runs from (editable install), if any."""
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "pyproject.toml").is_file() and (candidate / "sql").is_dir():
        return candidate
    return None


def default_state_dir() -> Path:
    """Per-checkout state (local database data, generated dev secrets); git-ignored."""
    root = _project_root()
    if root is not None:
        return root / ".rts"
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "rts-monitor"


def default_cache_dir() -> Path:
    """Shared across checkouts: the Debian 13 root used to run PostgreSQL on Debian 12."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rts-monitor"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default="",
        metadata=_env(
            "DATABASE_URL",
            "PostgreSQL DSN with TimescaleDB. Empty: the local server from `rts-monitor db up`.",
        ),
    )
    host: str = field(default="127.0.0.1", metadata=_env("RTS_HOST", "API bind address."))
    port: int = field(default=8080, metadata=_env("RTS_PORT", "API port."))
    workers: int = field(default=1, metadata=_env("RTS_WORKERS", "uvicorn worker processes."))
    public_url: str = field(
        default="",
        metadata=_env(
            "RTS_PUBLIC_URL",
            "Base URL agents use to reach the API (install commands, register response). "
            "Empty: http://HOST:PORT.",
        ),
    )
    log_level: str = field(default="INFO", metadata=_env("RTS_LOG_LEVEL", "Log level."))
    log_format: str = field(
        default="json", metadata=_env("RTS_LOG_FORMAT", "`json` (structured) or `text`.")
    )
    db_pool_min: int = field(default=2, metadata=_env("RTS_DB_POOL_MIN", "Pool minimum size."))
    db_pool_max: int = field(default=16, metadata=_env("RTS_DB_POOL_MAX", "Pool maximum size."))
    local_db_port: int = field(
        default=54329,
        metadata=_env("RTS_DB_PORT", "Port of the local server from `rts-monitor db up`."),
    )
    state_dir: Path = field(
        default_factory=default_state_dir,
        metadata=_env(
            "RTS_STATE_DIR",
            "Per-checkout state: local database data dir, generated dev secrets. "
            "Default: <checkout>/.rts (git-ignored).",
        ),
    )
    cache_dir: Path = field(
        default_factory=default_cache_dir,
        metadata=_env(
            "RTS_CACHE_DIR",
            "Cache shared by checkouts (the Debian 13 root on Debian 12 hosts). "
            "Default: ~/.cache/rts-monitor.",
        ),
    )
    jwt_secret: str = field(
        default="",
        metadata=_env(
            "RTS_JWT_SECRET",
            "HS256 secret shared with the portal. Empty: a random secret kept in the state dir "
            "(development only).",
        ),
    )
    jwt_public_key: str = field(
        default="",
        metadata=_env(
            "RTS_JWT_PUBLIC_KEY",
            "PEM public key (or a path to one) for RS256/ES256 portal tokens; when set, "
            "asymmetric tokens are accepted.",
        ),
    )
    jwt_audience: str = field(
        default="", metadata=_env("RTS_JWT_AUDIENCE", "Required `aud` claim, if set.")
    )
    jwt_issuer: str = field(default="", metadata=_env("RTS_JWT_ISSUER", "Required `iss`, if set."))
    jwt_leeway_seconds: int = field(
        default=30, metadata=_env("RTS_JWT_LEEWAY_SECONDS", "Clock skew tolerated on exp/nbf/iat.")
    )
    heartbeat_interval_seconds: int = field(
        default=300,
        metadata=_env("RTS_HEARTBEAT_INTERVAL_SECONDS", "Heartbeat interval given to agents."),
    )
    metrics_interval_seconds: int = field(
        default=300,
        metadata=_env("RTS_METRICS_INTERVAL_SECONDS", "Metrics interval given to agents."),
    )
    offline_after_intervals: int = field(
        default=3,
        metadata=_env(
            "RTS_OFFLINE_AFTER_INTERVALS",
            "Missed heartbeat intervals after which an agent is marked offline.",
        ),
    )
    scheduler_enabled: bool = field(
        default=True,
        metadata=_env("RTS_SCHEDULER_ENABLED", "Run scheduled jobs in this API process."),
    )
    presence_job_seconds: int = field(
        default=30, metadata=_env("RTS_PRESENCE_JOB_SECONDS", "How often presence is checked.")
    )
    max_body_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata=_env("RTS_MAX_BODY_BYTES", "Largest accepted request body (413 above)."),
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata.get("env")
            if name and name in env and env[name] != "":
                values[f.name] = _coerce(f.type, env[name])
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def effective_jwt_secret(self) -> str:
        """The configured secret, or a development secret generated once per state dir."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.state_dir / "jwt_secret"
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret)
        return secret


def _coerce(kind: Any, raw: str) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind_name == "int":
        return int(raw)
    if kind_name == "float":
        return float(raw)
    if kind_name == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if kind_name == "Path":
        return Path(raw).expanduser()
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the documentation table."""
    rows = []
    for f in dataclasses.fields(Settings):
        default: Any
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        rows.append((f.metadata["env"], str(default) if default != "" else "(empty)", f.metadata["doc"]))
    return rows
