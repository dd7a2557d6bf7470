"""Turn a chart request (range, interval, metrics) into a plan: which level answers it.

The coarsest tier whose bucket divides the interval is read (10m → 5m tier, 2h → 1h tier,
1d → 1d tier, 7m → raw); whatever that tier has not materialised yet comes from raw rows
(apache edition) or the continuous aggregate's real-time part (timescale license).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from rts_monitor.core.errors import ValidationFailed
from rts_monitor.tiers.definitions import METRICS, RATES, TIERS, Tier

MIN_INTERVAL = timedelta(seconds=10)  # agents report at most every 10 s: the raw step
MAX_INTERVAL = timedelta(days=1)
MAX_POINTS = 2000
DEFAULT_METRICS: tuple[str, ...] = ("cpu_percent", "memory_percent", "disk_percent")
KNOWN: tuple[str, ...] = (*METRICS, *RATES)
STATS: tuple[str, ...] = ("avg", "min", "max")
_INTERVAL = re.compile(r"^(\d{1,6})(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class Plan:
    start: datetime  # first chart bucket (aligned)
    end: datetime  # end of the last chart bucket (aligned, exclusive)
    interval: timedelta
    interval_sql: str
    tier: Tier | None  # None: computed from raw rows
    metrics: tuple[str, ...]
    stats: tuple[str, ...]

    @property
    def source(self) -> str:
        return self.tier.name if self.tier else "agent_metrics"


def parse_interval(text: str) -> tuple[timedelta, str]:
    """``5m`` → (5 minutes, '5 minutes'); between the raw step and 1 day, whole seconds."""
    m = _INTERVAL.match(text.strip())
    if not m:
        raise ValidationFailed(f"interval: {text!r} is not a number followed by s, m, h or d (e.g. 5m)",
                               field="interval")
    n, unit = int(m[1]), m[2]
    delta = timedelta(**{_UNITS[unit]: n})
    if delta < MIN_INTERVAL or delta > MAX_INTERVAL:
        raise ValidationFailed(f"interval: {text} is outside 10s..1d", field="interval")
    return delta, f"{int(delta.total_seconds())} seconds"


def parse_metrics(text: str | None) -> tuple[str, ...]:
    if text is None or not text.strip():
        return DEFAULT_METRICS
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    for name in names:
        if name not in KNOWN:
            raise ValidationFailed(f"metric: unknown metric {name!r}; known: {', '.join(KNOWN)}", field="metric")
    return names


def parse_stats(text: str | None) -> tuple[str, ...]:
    if text is None or not text.strip():
        return ("avg",)
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    for name in names:
        if name not in STATS:
            raise ValidationFailed(f"stats: unknown statistic {name!r}; known: avg, min, max", field="stats")
    return names


def pick_tier(interval: timedelta) -> Tier | None:
    """The coarsest tier whose bucket divides the interval evenly (None: raw)."""
    for tier in reversed(TIERS):
        if interval >= tier.width and interval % tier.width == timedelta(0):
            return tier
    return None


def _floor(t: datetime, step: timedelta) -> datetime:
    """Align like ``time_bucket`` for sub-month widths (origin 2000-01-03 UTC, a Monday midnight)."""
    origin = datetime(2000, 1, 3, tzinfo=t.tzinfo)
    return origin + ((t - origin) // step) * step


def plan(*, start: datetime | None, end: datetime | None, now: datetime, interval: str | None,
         metric: str | None, stats: str | None) -> Plan:
    """Validate the query and choose the level; the range is widened to whole chart buckets."""
    step, step_sql = parse_interval(interval or "5m")
    end = end or now
    start = start or end - timedelta(hours=24)
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValidationFailed(f"{name}: needs a time zone (e.g. 2025-10-09T10:30:00Z)", field=name)
    if end <= start:
        raise ValidationFailed("end: must be after start", field="end")
    lo = _floor(start, step)
    hi = _floor(end - timedelta(microseconds=1), step) + step
    points = (hi - lo) // step
    if points > MAX_POINTS:
        raise ValidationFailed(
            f"interval: {points} points between start and end; at most {MAX_POINTS} (use a coarser interval)",
            field="interval",
        )
    return Plan(lo, hi, step, step_sql, pick_tier(step), parse_metrics(metric), parse_stats(stats))
