"""The wire contract of alert rules, episodes and maintenance windows (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from rts_monitor.core.types import EmailOrUserId, Note, Text50, Text100, Text255, Url, planned_time

Severity = Literal["info", "warning", "critical"]
Kind = Literal["metric", "agent_offline", "service_down"]
Aggregation = Literal["avg", "min", "max"]
Operator = Literal[">", ">=", "<", "<="]
Channel = Literal["email", "webhook"]
EpisodeStatus = Literal["active", "acknowledged", "resolved", "auto_resolved"]

# Every stored metric column of agent_metrics a metric rule may watch.
METRICS: tuple[str, ...] = (
    "cpu_percent", "memory_used_gb", "memory_percent", "disk_used_gb", "disk_percent",
    "load_average_1m", "load_average_5m", "load_average_15m", "uptime_seconds",
    "network_rx_bytes", "network_tx_bytes",
)
PERCENT_METRICS = frozenset({"cpu_percent", "memory_percent", "disk_percent"})
MAX_DURATION_MINUTES = 1440
MAX_RECIPIENTS = 100


class Conditions(msgspec.Struct, forbid_unknown_fields=True):
    """The API contract's conditions plus ``kind``, ``aggregation``, ``hysteresis`` and ``service_name``."""

    kind: Kind = "metric"
    metric: Text50 | None = None  # the generated column agent_alerts.metric is VARCHAR(50)
    operator: Operator | None = None
    threshold: float | None = None
    duration_minutes: int = 5
    aggregation: Aggregation = "avg"
    hysteresis: float | None = None
    service_name: Text255 | None = None  # generated agent_alerts.service_name is VARCHAR(255)


Recipients = Annotated[list[EmailOrUserId], msgspec.Meta(max_length=MAX_RECIPIENTS)]
Channels = Annotated[list[Channel], msgspec.Meta(max_length=2)]


class RuleCreate(msgspec.Struct, forbid_unknown_fields=True):
    alert_name: Text255
    severity: Severity
    conditions: Conditions
    business_id: UUID | None = None
    agent_device_id: UUID | None = None
    alert_type: Text100 | None = None
    notification_enabled: bool = True
    notification_channels: Channels = msgspec.field(default_factory=list)
    notification_recipients: Recipients = msgspec.field(default_factory=list)
    webhook_url: Url | None = None
    create_ticket: bool = False
    is_active: bool = True


class RuleUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Partial update: only the fields present change (UNSET = leave alone)."""

    alert_name: Text255 | msgspec.UnsetType = msgspec.UNSET
    severity: Severity | msgspec.UnsetType = msgspec.UNSET
    conditions: Conditions | msgspec.UnsetType = msgspec.UNSET
    alert_type: Text100 | msgspec.UnsetType = msgspec.UNSET
    notification_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    notification_channels: Channels | msgspec.UnsetType = msgspec.UNSET
    notification_recipients: Recipients | msgspec.UnsetType = msgspec.UNSET
    webhook_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    create_ticket: bool | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


class Rule(msgspec.Struct):
    id: UUID
    alert_name: str
    alert_type: str
    severity: str
    business_id: UUID
    agent_device_id: UUID | None
    conditions: Conditions
    notification_enabled: bool
    notification_channels: list[str]
    notification_recipients: list[str]
    webhook_url: str | None
    create_ticket: bool
    is_active: bool
    last_triggered: datetime | None
    trigger_count: int
    created_at: datetime
    updated_at: datetime
    created_by: UUID | None


class RuleList(msgspec.Struct):
    rules: list[Rule]


class Episode(msgspec.Struct):
    """One firing of a rule on a device (a row of agent_alert_history)."""

    id: UUID
    agent_alert_id: UUID
    alert_name: str
    agent_device_id: UUID
    device_name: str
    business_id: UUID
    triggered_at: datetime
    resolved_at: datetime | None
    severity: str
    status: str
    alert_message: str
    metric_value: float | None
    threshold_value: float | None
    condition_since: datetime | None
    notification_sent: bool
    notification_sent_at: datetime | None
    service_request_created: UUID | None
    acknowledged_by: UUID | None
    acknowledged_at: datetime | None
    resolved_by: UUID | None
    resolution_notes: str | None


class EpisodeList(msgspec.Struct):
    alerts: list[Episode]
    total: int


class EpisodeAction(msgspec.Struct, forbid_unknown_fields=True):
    notes: Note | None = None


class MaintenanceCreate(msgspec.Struct, forbid_unknown_fields=True):
    starts_at: datetime
    ends_at: datetime
    business_id: UUID | None = None
    service_location_id: UUID | None = None
    agent_device_id: UUID | None = None
    reason: Note | None = None

    def __post_init__(self) -> None:
        planned_time(self.starts_at, "starts_at")
        planned_time(self.ends_at, "ends_at")


class MaintenanceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    starts_at: datetime | msgspec.UnsetType = msgspec.UNSET
    ends_at: datetime | msgspec.UnsetType = msgspec.UNSET
    reason: Note | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if isinstance(value, datetime):
                planned_time(value, name)


class Maintenance(msgspec.Struct):
    id: UUID
    business_id: UUID
    service_location_id: UUID | None
    agent_device_id: UUID | None
    starts_at: datetime
    ends_at: datetime
    reason: str | None
    created_by: UUID | None
    created_at: datetime
    active: bool


class MaintenanceList(msgspec.Struct):
    windows: list[Maintenance]


class Delivery(msgspec.Struct):
    channel: str
    event: str
    attempt: int
    target: str | None
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    attempted_at: datetime


class DeliveryList(msgspec.Struct):
    deliveries: list[Delivery]


MAX_BACKTEST_DAYS = 30


class BacktestRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A rule as it would be created, and the period to replay it over (at most 30 days back)."""

    rule: RuleCreate
    since: datetime
    until: datetime | None = None  # default: now

    def __post_init__(self) -> None:
        # Query bounds, as everywhere (core/types.py); the 30 days are checked against now by the service.
        planned_time(self.since, "since")
        planned_time(self.until, "until")


class BacktestEpisode(msgspec.Struct):
    """One episode the rule would have opened: from the instant (data time) whose window breached to
    the one whose window cleared it (``end`` None: still open at the end of the period)."""

    start: datetime
    end: datetime | None
    condition_since: datetime  # start of the window that opened it (start - duration)
    value: float  # the window's aggregate at the opening, as the live episode's metric_value
    peak: float  # the most extreme aggregate while open (max for > and >=, min for < and <=)
    ticket: bool  # a ticket would have been created (the rule creates tickets for every episode)


class BacktestDevice(msgspec.Struct):
    agent_device_id: UUID
    device_name: str
    episodes: list[BacktestEpisode]
    time_in_alert_seconds: float


class BacktestTotals(msgspec.Struct):
    episodes: int
    devices_affected: int
    devices_evaluated: int
    time_in_alert_seconds: float
    tickets: int


class BacktestChart(msgspec.Struct):
    """What a chart of the result needs beside the metric series (from the history API): the lines
    to draw and where the series comes from; the episodes (start..end) are the bands to shade."""

    metric: str
    aggregation: str
    operator: str
    threshold: float
    clear_threshold: float  # the window's aggregate must reach this to clear (hysteresis)
    duration_minutes: int
    history_path: str  # per device: replace {agent_id}; start/end/metric/interval as query parameters
    history_params: dict[str, str]


class BacktestReads(msgspec.Struct):
    """How the answer was read (docs/alerts.md, "Backtest"): which hours a tier showed quiet,
    how many instants were judged from raw rows."""

    tier: str | None  # the rollup tier used to skip quiet hours (None: every instant from raw)
    raw_ranges: int
    instants: int
    passes: int


class BacktestResult(msgspec.Struct):
    since: datetime
    until: datetime
    business_id: UUID
    agent_device_id: UUID | None
    chart: BacktestChart
    totals: BacktestTotals
    devices: list[BacktestDevice]  # devices with at least one episode, most time in alert first
    reads: BacktestReads
