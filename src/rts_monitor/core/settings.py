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

from rts_monitor.core.resources import checkout_root


def _env(name: str, doc: str) -> dict[str, Any]:
    return {"env": name, "doc": doc}


def default_state_dir() -> Path:
    """Per-checkout state (local database data, generated dev secrets); git-ignored."""
    root = checkout_root()
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
        default=0,
        metadata=_env(
            "RTS_DB_PORT",
            "Port of the local server from `rts-monitor db up`. 0 (default): 54329, or the next free "
            "port when another server holds it (remembered in <state dir>/db.json).",
        ),
    )
    local_db_edition: str = field(
        default="",
        metadata=_env(
            "RTS_DB_EDITION",
            "Edition of the local server from `rts-monitor db up`: tsl (TimescaleDB Community, built "
            "from source), apache (Debian's TimescaleDB) or postgres (no TimescaleDB). Empty: the one "
            "`db up --edition` last chose for this checkout, else tsl.",
        ),
    )
    timescaledb_source: str = field(
        default="",
        metadata=_env(
            "RTS_TIMESCALEDB_SOURCE",
            "Path or URL of the TimescaleDB release source archive the tsl edition is built from "
            "(checked against the pinned SHA-256). Empty: ../shared/vendor/timescaledb-<version>.tar.gz "
            "beside the checkout if present, else the tag's release archive.",
        ),
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
    latest_metrics_lookback_hours: int = field(
        default=168,
        metadata=_env(
            "RTS_LATEST_METRICS_LOOKBACK_HOURS",
            "Fleet list: newest metrics older than this are not shown (bounds the chunks probed).",
        ),
    )
    max_body_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata=_env("RTS_MAX_BODY_BYTES", "Largest accepted request body (413 above)."),
    )
    tiers_refresh_seconds: int = field(
        default=60,
        metadata=_env("RTS_TIERS_REFRESH_SECONDS",
                      "Apache and postgres editions: how often the rollup tiers advance and re-aggregate late "
                      "rows."),
    )
    tiers_retention_seconds: int = field(
        default=3600,
        metadata=_env("RTS_TIERS_RETENTION_SECONDS",
                      "Apache and postgres editions: how often retention drops old chunks/partitions."),
    )
    partitions_job_seconds: int = field(
        default=300,
        metadata=_env("RTS_PARTITIONS_JOB_SECONDS",
                      "Postgres edition: how often the coming days' partitions are made and rows waiting in a "
                      "DEFAULT partition (late or backfilled samples) get a partition of their own."),
    )
    partitions_ahead_days: int = field(
        default=7,
        metadata=_env("RTS_PARTITIONS_AHEAD_DAYS", "Postgres edition: days of partitions made ahead of now."),
    )
    ingest_flush_rows: int = field(
        default=10_000,
        metadata=_env("RTS_INGEST_FLUSH_ROWS", "Metric rows per group-commit flush (flush when reached)."),
    )
    ingest_flush_delay_ms: float = field(
        default=0.0,
        metadata=_env("RTS_INGEST_FLUSH_DELAY_MS",
                      "Extra wait for a queued metrics request before a free flush slot takes it (0: requests "
                      "coalesce while the flushes in flight commit, the lowest latency; docs/ingest.md)."),
    )
    ingest_queue_rows: int = field(
        default=50_000,
        metadata=_env("RTS_INGEST_QUEUE_ROWS",
                      "Metric rows admitted but not yet committed, per process; beyond it 503 + Retry-After."),
    )
    ingest_flush_concurrency: int = field(
        default=2, metadata=_env("RTS_INGEST_FLUSH_CONCURRENCY", "Flush transactions in flight per process.")
    )
    ingest_mode: str = field(
        default="copy",
        metadata=_env("RTS_INGEST_MODE",
                      "`copy`: COPY into the hypertable, staging fallback on duplicates; `stage`: always "
                      "staging + ON CONFLICT."),
    )
    ingest_max_future_seconds: int = field(
        default=300,
        metadata=_env("RTS_INGEST_MAX_FUTURE_SECONDS", "Samples stamped further ahead of server time are a 422."),
    )
    ingest_max_age_days: int = field(
        default=30,
        metadata=_env("RTS_INGEST_MAX_AGE_DAYS",
                      "Samples older than this are a 422 (keep it at most the raw-metrics retention)."),
    )
    ingest_hook_timeout_ms: float = field(
        default=250,
        metadata=_env("RTS_INGEST_HOOK_TIMEOUT_MS",
                      "Longest a metrics request waits for the alert hooks' answer (alerts_triggered) after "
                      "its flush commits; a slower hook finishes in the background."),
    )
    command_sensitive_types: str = field(
        default="run_script,update_agent",
        metadata=_env("RTS_COMMAND_SENSITIVE_TYPES",
                      "Comma-separated command types that need approval by another admin/technician."),
    )
    command_script_interpreters: str = field(
        default="bash,sh,powershell,pwsh,python3,cmd",
        metadata=_env("RTS_COMMAND_SCRIPT_INTERPRETERS", "Comma-separated interpreters run_script may use."),
    )
    command_output_max_bytes: int = field(
        default=65536,
        metadata=_env("RTS_COMMAND_OUTPUT_MAX_BYTES", "stdout/stderr kept per command (UTF-8 bytes each)."),
    )
    command_max_timeout_seconds: int = field(
        default=86400,
        metadata=_env("RTS_COMMAND_MAX_TIMEOUT_SECONDS", "Largest timeout_seconds a command may ask for."),
    )
    command_pending_ttl_seconds: int = field(
        default=86400,
        metadata=_env("RTS_COMMAND_PENDING_TTL_SECONDS",
                      "A command not delivered (or approved) within this many seconds times out."),
    )
    command_timeout_grace_seconds: int = field(
        default=30,
        metadata=_env("RTS_COMMAND_TIMEOUT_GRACE_SECONDS",
                      "Extra seconds after sent_at + timeout_seconds before a command is marked timeout."),
    )
    command_timeout_job_seconds: int = field(
        default=15,
        metadata=_env("RTS_COMMAND_TIMEOUT_JOB_SECONDS", "How often overdue commands are marked timeout."),
    )
    command_listen_retry_seconds: float = field(
        default=1.0,
        metadata=_env("RTS_COMMAND_LISTEN_RETRY_SECONDS",
                      "Wait before the command LISTEN connection reconnects after losing the server."),
    )
    ws_ping_interval_seconds: float = field(
        default=20.0,
        metadata=_env("RTS_WS_PING_INTERVAL_SECONDS", "WebSocket ping interval (keep-alive)."),
    )
    ws_ping_timeout_seconds: float = field(
        default=20.0,
        metadata=_env("RTS_WS_PING_TIMEOUT_SECONDS", "A WebSocket without a pong within this is closed."),
    )

    # --- alerting (see docs/alerts.md) ---
    alert_evaluate_seconds: float = field(
        default=60.0, metadata=_env("RTS_ALERT_EVALUATE_SECONDS", "How often every alert rule is evaluated."),
    )
    alert_outbox_seconds: float = field(
        default=5.0,
        metadata=_env("RTS_ALERT_OUTBOX_SECONDS", "How often pending tickets and notifications are processed."),
    )
    alert_data_stale_seconds: int = field(
        default=900,
        metadata=_env("RTS_ALERT_DATA_STALE_SECONDS",
                      "A device whose newest sample is older than this is neither fired nor resolved by "
                      "metric rules (no data is not 'cleared'; agent_offline rules cover it)."),
    )
    alert_window_slack_seconds: int = field(
        default=30,
        metadata=_env("RTS_ALERT_WINDOW_SLACK_SECONDS",
                      "Jitter tolerated at the start of a rule's window when checking it is covered by data."),
    )
    alert_max_sample_gap_seconds: int = field(
        default=660,
        metadata=_env("RTS_ALERT_MAX_SAMPLE_GAP_SECONDS",
                      "Largest gap between samples inside a window that still counts as covered "
                      "(default: one missed 5-minute sample)."),
    )
    alert_resolve_hysteresis_percent: float = field(
        default=5.0,
        metadata=_env("RTS_ALERT_RESOLVE_HYSTERESIS_PERCENT",
                      "A metric alert resolves only once the value is this % of the threshold back on the "
                      "good side (a rule's conditions.hysteresis overrides it)."),
    )
    alert_customer_rules: bool = field(
        default=False,
        metadata=_env("RTS_ALERT_CUSTOMER_RULES",
                      "Customers may create/update/delete alert rules and maintenance windows of their own "
                      "business (staff always may)."),
    )
    alert_cycle_pad_ms: int = field(
        default=0,
        metadata=_env("RTS_ALERT_CYCLE_PAD_MS",
                      "Drills/tests only: sleep this long inside each evaluation cycle while holding its lock."),
    )
    alert_fault_inject: str = field(
        default="",
        metadata=_env("RTS_ALERT_FAULT_INJECT",
                      "Drills/tests only: `ticket_once` raises once inside the ticket transaction, "
                      "`ticket_exit` kills the process there."),
    )
    webhook_secret: str = field(
        default="",
        metadata=_env("RTS_WEBHOOK_SECRET",
                      "HMAC-SHA256 key for X-RTS-Signature on alert webhooks. Empty: a random key kept in "
                      "the state dir (development only)."),
    )
    webhook_timeout_seconds: float = field(
        default=10.0, metadata=_env("RTS_WEBHOOK_TIMEOUT_SECONDS", "Timeout of one webhook delivery attempt."),
    )
    notify_max_attempts: int = field(
        default=8, metadata=_env("RTS_NOTIFY_MAX_ATTEMPTS", "Delivery attempts before a notification is failed."),
    )
    notify_backoff_seconds: float = field(
        default=30.0,
        metadata=_env("RTS_NOTIFY_BACKOFF_SECONDS",
                      "Wait before the first retry; doubles per attempt, capped at one hour."),
    )
    smtp_host: str = field(
        default="", metadata=_env("RTS_SMTP_HOST", "SMTP server for alert e-mail. Empty: e-mail is not sent."),
    )
    smtp_port: int = field(default=25, metadata=_env("RTS_SMTP_PORT", "SMTP port."))
    smtp_from: str = field(
        default="rts-monitor@localhost", metadata=_env("RTS_SMTP_FROM", "From address of alert e-mail."),
    )
    smtp_username: str = field(default="", metadata=_env("RTS_SMTP_USERNAME", "SMTP login, if any."))
    smtp_password: str = field(default="", metadata=_env("RTS_SMTP_PASSWORD", "SMTP password, if any."))
    smtp_starttls: bool = field(default=False, metadata=_env("RTS_SMTP_STARTTLS", "Use STARTTLS."))
    smtp_timeout_seconds: float = field(
        default=10.0, metadata=_env("RTS_SMTP_TIMEOUT_SECONDS", "Timeout of one SMTP delivery."),
    )
    agent_pip_source: str = field(
        default="",
        metadata=_env("RTS_AGENT_PIP_SOURCE",
                      "What /install.sh and update_agent pip-install on customer machines: a requirement, "
                      "wheel URL or path. Empty (default): this server's own agent wheel, "
                      "<public URL>/agent/rts_agent-<version>-py3-none-any.whl (GET /agent/package)."),
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
