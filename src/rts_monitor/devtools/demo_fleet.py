"""The demo's simulated fleet: many agents in one asyncio process, through the real API.

Each simulated device registers with a one-time token like a real agent, then heartbeats and
posts one sample per interval (plus an initial backfill so history charts are not empty). The
series are deterministic per device (seeded) and shaped like real machines: a working-hours
CPU curve with noise and spikes, memory that drifts, disks that fill slowly, load averages damped
like the kernel's, cumulative network counters, every value at the precision the real agent
sends; a mix of Linux and Windows servers and workstations. A few devices are "troubled" so
the default alert rules open alerts within minutes: a pegged CPU, a nearly full disk, a memory
leak, a web server whose nginx keeps stopping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

log = logging.getLogger(__name__)

GIB = 1024**3
TROUBLES = ("cpu_pegged", "disk_full", "memory_leak", "service_flapping")

_PROFILES: list[dict[str, Any]] = [
    {"kind": "web", "os_type": "linux", "os_version": "Ubuntu 22.04.4 LTS", "device_type": "server",
     "cores": 4, "memory_gb": 16, "disk_gb": 200, "services": ["nginx", "postgresql"], "net_mbps": 8.0},
    {"kind": "db", "os_type": "linux", "os_version": "Debian GNU/Linux 12 (bookworm)", "device_type": "server",
     "cores": 8, "memory_gb": 64, "disk_gb": 1000, "services": ["postgresql", "pgbouncer"], "net_mbps": 12.0},
    {"kind": "file", "os_type": "windows", "os_version": "Windows Server 2022", "device_type": "server",
     "cores": 4, "memory_gb": 32, "disk_gb": 4000, "services": ["LanmanServer", "Spooler"], "net_mbps": 20.0},
    {"kind": "dc", "os_type": "windows", "os_version": "Windows Server 2019", "device_type": "server",
     "cores": 2, "memory_gb": 8, "disk_gb": 120, "services": ["NTDS", "DNS"], "net_mbps": 1.0},
    {"kind": "desktop", "os_type": "windows", "os_version": "Windows 11 Pro 23H2", "device_type": "desktop",
     "cores": 8, "memory_gb": 16, "disk_gb": 512, "services": ["Spooler", "WinDefend"], "net_mbps": 0.5},
    {"kind": "laptop", "os_type": "macos", "os_version": "macOS 14.5", "device_type": "laptop",
     "cores": 8, "memory_gb": 16, "disk_gb": 512, "services": [], "net_mbps": 0.3},
    {"kind": "vm", "os_type": "linux", "os_version": "Rocky Linux 9.4", "device_type": "vm",
     "cores": 2, "memory_gb": 4, "disk_gb": 60, "services": ["sshd", "docker"], "net_mbps": 2.0},
]
_SOFTWARE = {
    "linux": [("openssl", "3.0.13"), ("openssh-server", "9.2p1"), ("curl", "7.88.1"), ("python3", "3.11.2"),
              ("nginx", "1.22.1"), ("postgresql-15", "15.7"), ("docker-ce", "26.1.4"), ("clamav", "1.0.5")],
    "windows": [("Microsoft Edge", "126.0.2592.68"), ("7-Zip", "23.01"), ("Google Chrome", "126.0.6478.127"),
                ("Microsoft 365 Apps", "16.0.17628"), ("Windows Defender", "4.18.24050"), ("Adobe Acrobat", "24.2")],
    "macos": [("Safari", "17.5"), ("Slack", "4.38.125"), ("Zoom", "6.1.1"), ("Google Chrome", "126.0")],
}


@dataclass
class SimDevice:
    """One simulated machine: identity, credentials once registered, and its series state."""

    index: int
    business_id: str
    location_id: str | None
    profile: dict[str, Any]
    trouble: str | None
    seed: int
    agent_id: str | None = None
    token: str | None = None
    rx: int = 0
    tx: int = 0
    boot: float = 0.0
    load: tuple[float, float, float] | None = None  # the kernel's 1, 5 and 15 minute averages
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        r = self.rng
        self.cpu_base = r.uniform(3, 30)
        self.cpu_amp = r.uniform(5, 30) if self.profile["device_type"] != "server" else r.uniform(5, 20)
        self.mem_base = r.uniform(25, 70)
        self.disk_base = r.uniform(15, 80)
        self.rx = r.randrange(10**9, 10**12)
        self.tx = r.randrange(10**9, 10**12)
        self.boot = time.time() - r.uniform(3600, 60 * 86400)

    @property
    def hostname(self) -> str:
        prefix = {"web": "web", "db": "db", "file": "FS", "dc": "DC", "desktop": "WS", "laptop": "mbp",
                  "vm": "vm"}[self.profile["kind"]]
        return f"{prefix}-{self.index:03d}"

    def register_body(self, token: str) -> dict[str, Any]:
        p = self.profile
        return {"token": token, "hostname": self.hostname, "os_type": p["os_type"], "os_version": p["os_version"],
                "os_architecture": "arm64" if p["os_type"] == "macos" else "x64",
                "ip_address": f"10.{self.index // 250}.{self.index % 250}.{10 + self.index % 200}",
                "mac_address": f"02:00:{self.index >> 8 & 255:02X}:{self.index & 255:02X}:01:02",
                "cpu_model": "Intel Xeon Silver 4314" if p["device_type"] == "server" else "Intel Core i7-1265U",
                "total_memory_gb": p["memory_gb"], "total_disk_gb": p["disk_gb"], "agent_version": "0.1.0-sim",
                "device_type": p["device_type"]}

    def sample(self, ts: float, step: float) -> dict[str, Any]:
        """The device's sample at ``ts`` (``step`` seconds after the previous one)."""
        r, p = self.rng, self.profile
        hour = (ts / 3600 + self.index % 3) % 24  # a few time zones
        workday = max(0.0, math.sin(math.pi * (hour - 7) / 12)) if 7 <= hour <= 19 else 0.0
        cpu = self.cpu_base + self.cpu_amp * workday + r.gauss(0, 3)
        if r.random() < 0.02:
            cpu += r.uniform(20, 50)  # a short spike: should not alert (rules need minutes)
        mem = self.mem_base + 8 * workday + r.gauss(0, 1.5)
        disk = self.disk_base + (ts - self.boot) / 86400 * 0.05
        if self.trouble == "cpu_pegged":
            cpu = r.uniform(93, 99.5)
        elif self.trouble == "disk_full":
            disk = 95.5 + r.uniform(-0.3, 0.3)
        elif self.trouble == "memory_leak":
            mem = 70 + 28 * ((ts / 1800) % 1.0)  # climbs to ~98% every 30 minutes, then restarts
        cpu, mem, disk = (min(100.0, max(0.0, v)) for v in (cpu, mem, disk))
        rate = p["net_mbps"] * 125_000 * (0.3 + workday) * r.uniform(0.7, 1.3)
        self.rx += int(rate * step)
        self.tx += int(rate * step * r.uniform(0.2, 0.6))
        # Load averages as the kernel keeps them: exponentially damped averages of the runnable
        # count over 1, 5 and 15 minutes, so the 5 and 15 minute figures move slowly.
        runnable = cpu / 100 * p["cores"] * r.uniform(0.8, 1.2)
        prev = self.load or (runnable, runnable, runnable)
        self.load = la1, la5, la15 = tuple(
            v * math.exp(-step / period) + runnable * (1 - math.exp(-step / period))
            for v, period in zip(prev, (60.0, 300.0, 900.0), strict=True))
        services = []
        for name in p["services"]:
            status = "running"
            if self.trouble == "service_flapping" and name == p["services"][0] and (ts // 120) % 3 == 0:
                status = "stopped"
            services.append({"name": name, "status": status,
                             "pid": None if status != "running" else 1000 + zlib.crc32(name.encode()) % 30000})
        return {
            "collected_at": datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z"),
            # at the precision the real agent sends (agent/src/rts_agent/collect.py): psutil gives
            # percentages with one decimal, the agent rounds gigabytes to 3 and load averages to 2
            "cpu_percent": round(cpu, 1), "memory_percent": round(mem, 1),
            "memory_used_gb": round(p["memory_gb"] * mem / 100, 3),
            "disk_percent": round(disk, 1), "disk_used_gb": round(p["disk_gb"] * disk / 100, 3),
            "load_average": [round(la1, 2), round(la5, 2), round(la15, 2)],
            "uptime_seconds": int(ts - self.boot), "network_rx_bytes": self.rx, "network_tx_bytes": self.tx,
            "services": services,
        }

    def inventory(self) -> dict[str, Any]:
        items = [{"name": n, "version": v, "software_type": "application"}
                 for n, v in _SOFTWARE[self.profile["os_type"]]]
        return {"software": items, "source": "simulated", "collected_at": datetime.now(UTC).isoformat()}


def _trouble(i: int) -> str | None:
    """One of each kind among the first 16 devices (small demos show them all), then 1 in 25."""
    if i < 16:
        return TROUBLES[i // 4] if i % 4 == 3 else None
    return TROUBLES[(i // 25) % len(TROUBLES)] if i % 25 == 3 else None


def build_fleet(size: int, businesses: list[tuple[str, list[str]]], seed: int = 7) -> list[SimDevice]:
    """``size`` devices spread over the businesses and their locations, a few troubled."""
    rng = random.Random(seed)
    out = []
    for i in range(size):
        business_id, locations = businesses[i % len(businesses)]
        profile = _PROFILES[rng.randrange(len(_PROFILES))]
        trouble = _trouble(i)
        if trouble == "service_flapping" and not profile["services"]:
            profile = _PROFILES[0]
        location = locations[i % len(locations)] if locations else None
        out.append(SimDevice(i + 1, business_id, location, profile, trouble, seed * 100_003 + i))
    return out


@dataclass
class FleetStats:
    samples: int = 0
    batches: int = 0
    errors: int = 0
    alerts_triggered: int = 0
    last_error: str | None = None


class Fleet:
    """Runs every simulated device's loop against the API at ``base_url``."""

    def __init__(self, base_url: str, devices: list[SimDevice], *, interval: float, heartbeat: float,
                 backfill_hours: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.devices = devices
        self.interval = interval
        self.heartbeat = heartbeat
        self.backfill_hours = backfill_hours
        self.stats = FleetStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def register(self, session: aiohttp.ClientSession, admin_token: str, concurrency: int = 8) -> None:
        """Registration token (admin API) then register (agent API) for devices lacking credentials."""
        sem = asyncio.Semaphore(concurrency)

        async def one(d: SimDevice) -> None:
            async with sem:
                body = {"business_id": d.business_id, "service_location_id": d.location_id,
                        "device_name": d.hostname, "expires_in_hours": 1}
                token = await _post(session, f"{self.base_url}/api/agents/registration-tokens", body,
                                    {"Authorization": f"Bearer {admin_token}"})
                answer = await _post(session, f"{self.base_url}/api/agents/register",
                                     d.register_body(token["token"]), {})
                d.agent_id, d.token = str(answer["agent_id"]), str(answer["agent_token"])

        await asyncio.gather(*(one(d) for d in self.devices if d.token is None))

    async def run(self, session: aiohttp.ClientSession) -> None:
        tasks = [asyncio.create_task(self._device(session, d, i)) for i, d in enumerate(self.devices)]
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _device(self, session: aiohttp.ClientSession, d: SimDevice, i: int) -> None:
        headers = {"Authorization": f"Bearer {d.token}"}
        agent_url = f"{self.base_url}/api/agents/{d.agent_id}"
        now = time.time()
        # Spread devices over the interval so the server sees a steady stream, not bursts.
        await asyncio.sleep(self.interval * (i % 97) / 97)
        await self._call(session, agent_url + "/heartbeat", {"status": "online", "agent_version": "0.1.0-sim"},
                         headers)
        await self._call(session, agent_url + "/inventory", d.inventory(), headers)
        if self.backfill_hours > 0:
            step = 300.0
            start = now - self.backfill_hours * 3600
            points = [d.sample(start + k * step, step) for k in range(int(self.backfill_hours * 3600 / step))]
            for k in range(0, len(points), 500):
                await self._metrics(session, agent_url, points[k:k + 500], headers)
        last_beat = time.monotonic()
        last_ts = time.time()
        next_at = time.monotonic()
        while not self._stop.is_set():
            ts = time.time()
            await self._metrics(session, agent_url, [d.sample(ts, max(1.0, ts - last_ts))], headers)
            last_ts = ts
            if time.monotonic() - last_beat >= self.heartbeat:
                await self._call(session, agent_url + "/heartbeat", {"status": "online"}, headers)
                last_beat = time.monotonic()
            # A fixed cadence (slow answers do not stretch it), with a little jitter.
            next_at = max(next_at + self.interval, time.monotonic())
            await asyncio.sleep(max(0.0, next_at - time.monotonic()) + random.uniform(0, self.interval * 0.05))

    async def _metrics(self, session: aiohttp.ClientSession, url: str, samples: list[dict[str, Any]],
                       headers: dict[str, str]) -> None:
        answer = await self._call(session, url + "/metrics", {"metrics": samples}, headers)
        if answer is not None:
            self.stats.samples += len(samples)
            self.stats.batches += 1
            self.stats.alerts_triggered += len(answer.get("alerts_triggered") or [])

    async def _call(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                    headers: dict[str, str]) -> Any:
        try:
            return await _post(session, url, body, headers)
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{url.rsplit('/', 1)[-1]}: {exc}"[:300]
            return None


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    async with session.post(url, data=msgspec.json.encode(body),
                            headers={"Content-Type": "application/json", **headers},
                            timeout=aiohttp.ClientTimeout(total=60)) as resp:
        raw = await resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{resp.status} {raw[:300].decode(errors='replace')}")
        return msgspec.json.decode(raw) if raw else None
