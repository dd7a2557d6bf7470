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


ENVIRONMENTS = ("production", "development", "test")


class ConfigurationError(RuntimeError):
    """The settings cannot run in this environment; the message names each variable to set."""


@dataclass(frozen=True)
class Settings:
    env: str = field(
        default="production",
        metadata=_env(
            "RTS_ENV",
            "`production` (default): refuse to start without RTS_JWT_SECRET (or RTS_JWT_PUBLIC_KEY), "
            "RTS_WEBHOOK_SECRET and RTS_PUBLIC_URL; webhooks https-only to public addresses. "
            "`development` (./dev run): missing secrets are generated in the state dir (and said so); http "
            "webhooks and private receivers allowed. `test`: development plus the fault-injection drills.",
        ),
    )
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
    db_acquire_timeout_seconds: float = field(
        default=1.0,
        metadata=_env("RTS_DB_ACQUIRE_TIMEOUT_SECONDS",
                      "Longest a request waits for a pooled connection; then 503 + Retry-After (db/availability.py)."),
    )
    db_probe_interval_seconds: float = field(
        default=0.25,
        metadata=_env("RTS_DB_PROBE_INTERVAL_SECONDS",
                      "While the database is unreachable (every request answered 503 at once), how often a "
                      "connection is tried; the first that succeeds refills the pool and ends the outage."),
    )
    database_read_url: str = field(
        default="",
        metadata=_env(
            "RTS_DATABASE_READ_URL",
            "DSN of a hot standby of DATABASE_URL (streaming replica, same database name). When set, chart "
            "history, fleet lists, reports and the console's list and device pages read from it; writes and "
            "a caller's reads right after its own write stay on the primary. A standby that lags or is down "
            "is bypassed (db/reads.py, docs/operations.md \"Read replicas\"). Empty (default): every read on "
            "the primary.",
        ),
    )
    read_max_lag_seconds: float = field(
        default=5.0,
        metadata=_env("RTS_READ_MAX_LAG_SECONDS",
                      "A standby further behind the primary than this is bypassed (reads go to the primary) "
                      "until it catches up."),
    )
    read_check_seconds: float = field(
        default=1.0,
        metadata=_env("RTS_READ_CHECK_SECONDS",
                      "How often the standby's lag is measured (and, while it is down, its return looked for)."),
    )
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
            "HS256 secret shared with the portal. Empty: refused in production; elsewhere a random secret "
            "kept in the state dir.",
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
    agent_token_max_age_days: float = field(
        default=90.0,
        metadata=_env("RTS_AGENT_TOKEN_MAX_AGE_DAYS",
                      "Agent tokens are rotated before they reach this age (at 90% of it, by the "
                      "auth.rotate_agent_tokens job; delivered in the next heartbeat answer). 0: never."),
    )
    agent_token_grace_seconds: int = field(
        default=3600,
        metadata=_env("RTS_AGENT_TOKEN_GRACE_SECONDS",
                      "After a rotation the replaced agent token still works this long (requests in flight, "
                      "an agent that has not saved the new one yet)."),
    )
    auth_failure_window_seconds: int = field(
        default=600,
        metadata=_env("RTS_AUTH_FAILURE_WINDOW_SECONDS",
                      "Window over which failed registration/agent-token attempts are counted (auth/limits.py)."),
    )
    auth_failures_per_address: int = field(
        default=30,
        metadata=_env("RTS_AUTH_FAILURES_PER_ADDRESS",
                      "Failed attempts from one source address per window before it gets 429 with Retry-After."),
    )
    auth_failures_per_token: int = field(
        default=5,
        metadata=_env("RTS_AUTH_FAILURES_PER_TOKEN",
                      "Failed attempts with one registration-token prefix per window before 429."),
    )
    trusted_proxies: str = field(
        default="",
        metadata=_env("RTS_TRUSTED_PROXIES",
                      "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (rate "
                      "limits, logs). Empty: the TCP peer is the client."),
    )
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
        default="run_script,update_agent,stop_service",
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
    rollout_job_seconds: float = field(
        default=10.0,
        metadata=_env("RTS_ROLLOUT_JOB_SECONDS", "How often staged agent rollouts advance (results, next wave)."),
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
    ws_max_handshakes: int = field(
        default=256,
        metadata=_env("RTS_WS_MAX_HANDSHAKES",
                      "Agent WebSocket handshakes one process authenticates against the database at once; "
                      "more (a reconnect storm after a restart), or any while requests queue for a pooled "
                      "connection, are answered 503 with a Retry-After of 2-10 s (docs/websocket.md)."),
    )

    # --- auto-remediation of monitored services (see docs/services.md) ---
    remediation_max_per_hour: int = field(
        default=3,
        metadata=_env("RTS_REMEDIATION_MAX_PER_HOUR",
                      "Most restart_service commands the server issues on its own per service per hour."),
    )
    remediation_grace_seconds: float = field(
        default=120.0,
        metadata=_env("RTS_REMEDIATION_GRACE_SECONDS",
                      "How long a service that auto-remediation is restarting may stay down before its "
                      "service_down alert (and ticket) opens as usual."),
    )
    remediation_check_seconds: float = field(
        default=10.0,
        metadata=_env("RTS_REMEDIATION_CHECK_SECONDS",
                      "How often down services with auto_restart are looked for (crash events act at once)."),
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
                      "Test drill (RTS_ENV=test only): sleep this long inside each evaluation cycle while "
                      "holding its lock."),
    )
    alert_fault_inject: str = field(
        default="",
        metadata=_env("RTS_ALERT_FAULT_INJECT",
                      "Test drill (RTS_ENV=test only): `ticket_once` raises once inside the ticket "
                      "transaction, `ticket_exit` kills the process there."),
    )
    webhook_secret: str = field(
        default="",
        metadata=_env("RTS_WEBHOOK_SECRET",
                      "HMAC-SHA256 key for X-RTS-Signature on alert webhooks. Empty: refused in production; "
                      "elsewhere a random key kept in the state dir."),
    )
    outbound_allow: str = field(
        default="",
        metadata=_env("RTS_OUTBOUND_ALLOW",
                      "Comma-separated CIDRs or host names webhooks may reach although private (on-premises "
                      "receivers). Outside them, production calls only public addresses "
                      "(notifications/outbound.py)."),
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
    # SMS (docs/alerts.md, "SMS"): the provider's Messages REST API (Twilio's shape).
    sms_provider: str = field(
        default="twilio", metadata=_env("RTS_SMS_PROVIDER", "SMS provider; 'twilio' (Twilio's Messages API)."),
    )
    sms_api_url: str = field(
        default="https://api.twilio.com",
        metadata=_env("RTS_SMS_API_URL", "Base URL of the provider's API (a test gateway, a regional endpoint)."),
    )
    sms_account_sid: str = field(default="", metadata=_env("RTS_SMS_ACCOUNT_SID", "Provider account SID."))
    sms_auth_token: str = field(default="", metadata=_env("RTS_SMS_AUTH_TOKEN", "Provider auth token."))
    sms_from: str = field(default="", metadata=_env("RTS_SMS_FROM", "Sender number (E.164) texts come from."))
    sms_timeout_seconds: float = field(
        default=10.0, metadata=_env("RTS_SMS_TIMEOUT_SECONDS", "Timeout of one request to the SMS provider."),
    )
    sms_digest_threshold: int = field(
        default=5,
        metadata=_env("RTS_SMS_DIGEST_THRESHOLD",
                      "More alert episodes than this opening within a minute for one number: one digest "
                      "text instead of one each."),
    )
    agent_pip_source: str = field(
        default="",
        metadata=_env("RTS_AGENT_PIP_SOURCE",
                      "What /install.sh and update_agent pip-install on customer machines: a requirement, "
                      "wheel URL or path. Empty (default): this server's own agent wheel, "
                      "<public URL>/agent/rts_agent-<version>-py3-none-any.whl (GET /agent/package)."),
    )

    # --- the operator console at /console/ (docs/console.md) ---
    console_session_idle_minutes: int = field(
        default=30,
        metadata=_env("RTS_CONSOLE_SESSION_IDLE_MINUTES",
                      "A console session unused for this long ends (sign in again, then back to the page)."),
    )
    console_session_absolute_hours: int = field(
        default=12,
        metadata=_env("RTS_CONSOLE_SESSION_ABSOLUTE_HOURS",
                      "A console session ends this long after sign-in, used or not."),
    )
    console_sign_in_window_minutes: int = field(
        default=15,
        metadata=_env("RTS_CONSOLE_SIGN_IN_WINDOW_MINUTES", "Window over which failed password sign-ins are counted."),
    )
    console_sign_in_max_per_account: int = field(
        default=5,
        metadata=_env("RTS_CONSOLE_SIGN_IN_MAX_PER_ACCOUNT",
                      "Failed password sign-ins for one e-mail within the window before further tries get 429."),
    )
    console_sign_in_max_per_address: int = field(
        default=30,
        metadata=_env("RTS_CONSOLE_SIGN_IN_MAX_PER_ADDRESS",
                      "Failed password sign-ins from one client address within the window before further tries "
                      "get 429."),
    )
    console_frame_ancestors: str = field(
        default="'self'",
        metadata=_env("RTS_CONSOLE_FRAME_ANCESTORS",
                      "CSP frame-ancestors of console pages: who may embed them in a frame (e.g. "
                      "`'self' https://portal.example.com`); `'none'` forbids embedding."),
    )

    # --- operability: metrics, readiness, logs (docs/operations.md) ---
    metrics_token: str = field(
        default="",
        metadata=_env("RTS_METRICS_TOKEN",
                      "Bearer token Prometheus sends to GET /metrics on the API port. Empty (and no "
                      "RTS_METRICS_BIND): /metrics answers 404; the metrics are never public by default."),
    )
    metrics_bind: str = field(
        default="",
        metadata=_env("RTS_METRICS_BIND",
                      "HOST:PORT of a separate listener serving the metrics without a token (a private "
                      "interface or a port the load balancer does not forward), opened by `serve` for all "
                      "its workers and by `scheduler`. Empty: none."),
    )
    metrics_sample_seconds: float = field(
        default=5.0,
        metadata=_env("RTS_METRICS_SAMPLE_SECONDS",
                      "How often each process samples its pool, queue and socket gauges and reads the "
                      "outbox backlog and tier lag from the database."),
    )
    shutdown_grace_seconds: float = field(
        default=3.0,
        metadata=_env("RTS_SHUTDOWN_GRACE_SECONDS",
                      "On SIGTERM, how long /health/ready answers 503 while requests are still served, so "
                      "a load balancer stops sending new ones before the listener closes; then in-flight "
                      "requests get 30 s and the ingest queue 60 s to drain."),
    )
    access_log: str = field(
        default="all",
        metadata=_env("RTS_ACCESS_LOG",
                      "`all`: one `http.request` log line per answered request (route, status, duration_ms, "
                      "request_id); `errors`: only answers >= 400 and those slower than 1 s (the line is ~15% "
                      "of the CPU of a one-sample ingest request); `off`."),
    )

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigurationError(f"RTS_ENV={self.env!r}: must be one of {', '.join(ENVIRONMENTS)}")
        drills = [name for name, on in (("RTS_ALERT_FAULT_INJECT", self.alert_fault_inject),
                                         ("RTS_ALERT_CYCLE_PAD_MS", self.alert_cycle_pad_ms)) if on]
        if self.access_log not in ("all", "errors", "off"):
            raise ConfigurationError(f"RTS_ACCESS_LOG={self.access_log!r}: must be all, errors or off")
        if drills and self.env != "test":
            raise ConfigurationError(f"{', '.join(drills)}: test drills, honoured only with RTS_ENV=test")

    @property
    def production(self) -> bool:
        return self.env == "production"

    def missing_for_production(self) -> list[str]:
        """The variables production needs and that are not set (empty outside production)."""
        if not self.production:
            return []
        missing = []
        if not self.jwt_secret and not self.jwt_public_key:
            missing.append("RTS_JWT_SECRET (or RTS_JWT_PUBLIC_KEY): the key portal tokens are checked with")
        if not self.webhook_secret:
            missing.append("RTS_WEBHOOK_SECRET: the key alert webhooks are signed with")
        if not self.public_url:
            missing.append("RTS_PUBLIC_URL: the URL agents and install scripts use to reach the API")
        return missing

    def require_runnable(self) -> None:
        """Refuse to start a production process with generated or missing secrets."""
        missing = self.missing_for_production()
        if missing:
            raise ConfigurationError(
                "RTS_ENV=production and these are not set:\n  " + "\n  ".join(missing)
                + "\n(set them, or RTS_ENV=development for a development server with generated secrets)")

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
        """The configured secret, or (outside production) a development secret kept in the state dir."""
        return self.jwt_secret or self._development_secret("jwt_secret", "RTS_JWT_SECRET", 48)

    def effective_webhook_secret(self) -> str:
        return self.webhook_secret or self._development_secret("webhook_secret", "RTS_WEBHOOK_SECRET", 32)

    def _development_secret(self, name: str, variable: str, nbytes: int) -> str:
        """Generated once per state dir, so every process of one checkout agrees; never in production,
        where two processes with their own random secrets would silently reject each other's work."""
        if self.production:
            raise ConfigurationError(f"{variable} is not set (RTS_ENV=production generates no secrets)")
        path = self.state_dir / name
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(nbytes)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process of this checkout won the race
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        return value


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


# The processes of a deployment (docker/compose.yaml) and what each must be given in production.
# Whatever serves the API or runs the scheduled jobs needs the production secrets; whatever runs
# the jobs also sends notifications (tickets, webhooks, e-mail), so it needs every setting of them.
ROLES = ("migrate", "api", "scheduler")
_NOTIFICATION_PREFIXES = ("RTS_SMTP_", "RTS_WEBHOOK_", "RTS_NOTIFY_", "RTS_OUTBOUND_ALLOW", "RTS_SMS_")


def variables_for(role: str, *, runs_jobs: bool | None = None) -> list[str]:
    """The environment variables a production process of ``role`` must be given (``runs_jobs``: an
    API process with RTS_SCHEDULER_ENABLED; the scheduler always runs them)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    out = ["DATABASE_URL"]
    if role == "migrate":
        return out
    out += ["RTS_ENV", "RTS_JWT_SECRET", "RTS_JWT_PUBLIC_KEY", "RTS_JWT_AUDIENCE", "RTS_JWT_ISSUER",
            "RTS_WEBHOOK_SECRET", "RTS_PUBLIC_URL"]
    if role == "scheduler" or runs_jobs:
        out += [f.metadata["env"] for f in dataclasses.fields(Settings)
                if f.metadata["env"].startswith(_NOTIFICATION_PREFIXES) and f.metadata["env"] not in out]
    return out


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the documentation table."""
    rows = []
    for f in dataclasses.fields(Settings):
        default: Any
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        rows.append((f.metadata["env"], str(default) if default != "" else "(empty)", f.metadata["doc"]))
    return rows
