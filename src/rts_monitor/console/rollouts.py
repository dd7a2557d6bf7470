"""The rollout pages' data: the list with each rollout's progress, one rollout with its waves, its
devices and what the viewer may do to it, and what the start form offers.

Rollouts come from ``rollouts.service`` (staff only, as the API; the routes also show customers
the 404 page first); only people's e-mails, businesses' names and the opt-outs are read here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import msgspec

from rts_monitor.auth.principal import Principal
from rts_monitor.commands import service as commands
from rts_monitor.console.commands import emails
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all
from rts_monitor.installers import agent_wheel
from rts_monitor.rollouts import service
from rts_monitor.rollouts.structs import (
    DEVICE_STATES,
    DEVICES_OFFSET_MAX,
    DeviceState,
    Rollout,
    RolloutCreate,
    WaveProgress,
)

Q = Queries.beside(__file__)
LISTED = 100
# Devices on one rollout page: the page re-reads itself while the rollout runs (at most once a
# second), so it never renders a whole fleet; the state filter finds the ones that matter.
DEVICES_PER_PAGE = 200
MAX_PAGE = DEVICES_OFFSET_MAX // DEVICES_PER_PAGE
# The device filter's choices, in the order of the bar's legend, with the words the page uses.
STATE_WORDS: dict[DeviceState, str] = {"failed": "failed", "sent": "in progress", "planned": "waiting",
                                       "succeeded": "updated", "skipped": "skipped"}
# The bar's segments, left to right; what is still planned is the empty rest of the track.
SEGMENTS = ("succeeded", "failed", "sent", "skipped")


@dataclass(frozen=True)
class Progress:
    """Devices by state, for a rollout or one wave (the same counts as the live channel's
    ``rollout`` events: frontend/src/rollouts.ts draws the bar and the text from those alike)."""

    devices: int = 0
    planned: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, waves: list[WaveProgress]) -> Progress:
        return cls(**{f.name: sum(getattr(w, f.name) for w in waves) for f in fields(cls)})

    def segments(self) -> list[tuple[str, float, float]]:
        """(state, x, width) in percent of the bar."""
        out: list[tuple[str, float, float]] = []
        x = 0.0
        for state in SEGMENTS:
            width = round(getattr(self, state) * 100 / self.devices, 3) if self.devices else 0.0
            out.append((state, x, width))
            x = round(x + width, 3)
        return out

    @property
    def summary(self) -> str:
        parts = [f"{self.succeeded:,} of {self.devices:,} updated"]
        parts += [f"{n:,} {what}" for n, what in ((self.failed, "failed"), (self.sent, "in progress"),
                                                 (self.skipped, "skipped")) if n]
        return ", ".join(parts)


_CURRENT_WAVE = {"running": ("in_progress", "in progress"), "awaiting_approval": ("waiting", "waiting for approval"),
                 "paused": ("paused", "paused"), "halted": ("halted", "halted")}


def wave_state(rollout: Rollout, wave: WaveProgress) -> tuple[str, str]:
    """(badge kind, words) of a wave within its rollout."""
    if wave.planned == 0 and wave.sent == 0:
        return ("skipped", "skipped") if wave.skipped == wave.devices else ("finished", "finished")
    if rollout.status == "aborted":
        return "aborted", "aborted (updates already sent finish)"
    if wave.wave > rollout.current_wave:
        return "waiting", "not started"
    return _CURRENT_WAVE.get(rollout.status, ("in_progress", "in progress"))


async def _business_names(conn: Conn) -> dict[UUID, str]:
    rows = await fetch_all(conn, Q.business_options, {"scope": None})  # staff: every business
    return {r["id"]: r["business_name"] for r in rows}


@dataclass
class RolloutsPage:
    rollouts: list[Rollout]
    progress: dict[UUID, Progress]
    people: dict[UUID, str]
    businesses: dict[UUID, str]
    form: dict[str, Any]


async def overview(conn: Conn, *, principal: Principal, settings: Settings) -> RolloutsPage:
    listed = (await service.list_rollouts(conn, principal=principal, status=None, limit=LISTED)).rollouts
    businesses = await _business_names(conn)
    opted_out = {o.business_id for o in await service.list_opt_outs(conn, principal=principal)}
    return RolloutsPage(listed, {r.id: Progress.of(r.progress) for r in listed},
                        await emails(conn, {r.requested_by for r in listed}), businesses,
                        form_context(settings, businesses, opted_out))


@dataclass(frozen=True)
class WaveRow:
    wave: WaveProgress
    kind: str  # the state's badge
    words: str
    progress: Progress


@dataclass(frozen=True)
class DevicePage:
    """Which devices the page lists: one state (or all), one page of ``DEVICES_PER_PAGE``."""

    state: DeviceState | None
    page: int
    pages: int
    matching: int
    choices: list[tuple[DeviceState | None, str, int]]  # (state, words, devices in it)

    @property
    def words(self) -> str:
        return self.word(self.state) if self.state else "all"

    @staticmethod
    def word(state: str) -> str:
        """A device state as the page says it (the bar's legend's words)."""
        return next((words for s, words in STATE_WORDS.items() if s == state), state)

    @staticmethod
    def href(rollout_id: UUID, state: DeviceState | None, page: int = 1) -> str:
        query = urlencode([(k, v) for k, v in (("state", state), ("page", page if page > 1 else None)) if v])
        return f"/console/rollouts/{rollout_id}" + (f"?{query}" if query else "")

    @property
    def first(self) -> int:
        return min(self.matching, (self.page - 1) * DEVICES_PER_PAGE + 1)

    @property
    def last(self) -> int:
        return min(self.matching, self.page * DEVICES_PER_PAGE)


@dataclass
class RolloutDetail:
    rollout: Rollout
    progress: Progress
    waves: list[WaveRow]
    people: dict[UUID, str]
    businesses: dict[UUID, str]
    actions: list[str]
    devices: DevicePage

    @property
    def failure_rate(self) -> float | None:
        """Failed updates of the finished ones, in percent (None before any finished)."""
        finished = self.progress.succeeded + self.progress.failed
        return self.progress.failed * 100 / finished if finished else None


def device_filter(state: str | None, page: str | int | None) -> tuple[DeviceState | None, int]:
    """The page's ``?state=&page=``, leniently: an unknown state lists every device, a page that
    is not a positive number the first (a hand-edited address still shows the rollout)."""
    chosen = next((s for s in DEVICE_STATES if s == state), None)
    try:
        number = max(1, int(page or 1))
    except ValueError:
        number = 1
    # a page past the last shows the last (detail); past the API's own offset bound it is one too
    return chosen, min(number, MAX_PAGE)


async def detail(conn: Conn, *, principal: Principal, rollout_id: UUID, state: DeviceState | None = None,
                 page: int = 1) -> RolloutDetail:
    """The rollout with one page of its devices; a page past the last shows the last."""
    async def read(number: int) -> Rollout:
        return await service.get(conn, principal=principal, rollout_id=rollout_id, device_state=state,
                                 device_limit=DEVICES_PER_PAGE, device_offset=(number - 1) * DEVICES_PER_PAGE)

    rollout = await read(page)
    pages = max(1, -(-(rollout.devices_matching or 0) // DEVICES_PER_PAGE))
    if page > pages:
        page = pages
        rollout = await read(page)
    progress = Progress.of(rollout.progress)
    choices: list[tuple[DeviceState | None, str, int]] = [(None, "all", progress.devices)]
    choices += [(s, words, getattr(progress, s)) for s, words in STATE_WORDS.items()]
    waves = [WaveRow(w, *wave_state(rollout, w), Progress.of([w])) for w in rollout.progress]
    people = await emails(conn, {u for u in (rollout.requested_by, rollout.approved_by) if u})
    return RolloutDetail(rollout, progress, waves, people, await _business_names(conn),
                         service.actions_for(principal, rollout),
                         DevicePage(state, page, pages, rollout.devices_matching or 0, choices))


def form_context(settings: Settings, businesses: dict[UUID, str], opted_out: set[UUID]) -> dict[str, Any]:
    """What the start form offers: the version this server serves, whether a second person must
    approve, and the numbers' defaults and bounds as ``RolloutCreate`` declares them."""
    try:
        served: str | None = agent_wheel.wheel().version
    except agent_wheel.AgentSourcesMissing:
        served = None
    info = msgspec.inspect.type_info(RolloutCreate)
    assert isinstance(info, msgspec.inspect.StructType)
    numbers = {}
    for f in info.fields:
        if isinstance(f.type, msgspec.inspect.IntType):
            numbers[f.name] = {"value": f.default, "min": f.type.ge, "max": f.type.le}
    return {"served": served, "needs_approval": "update_agent" in commands.sensitive_types(settings),
            "numbers": numbers, "businesses": businesses, "opted_out": opted_out}
