"""Collectors: what the agent measures, with psutil and the platform's service/package tools.

Each collector is a small function filling part of one ``Sample``. ``Collector.sample()`` runs
them all and records any failure in ``Sample.errors`` (collector name -> message) instead of
raising, so a broken ``systemctl`` never costs the CPU figure. The field names are the API contract's
metric payload; ``disks`` adds the per-filesystem detail whose fullest entry fills
``disk_used_gb``/``disk_percent``.

Windows: CPU, memory, disks (fixed drives), uptime, network and services (``psutil.win_service_*``)
use psutil's Windows APIs; load averages are psutil's emulation (zeros for the first 5 seconds).
The Windows paths are untested here (no Windows host); inventory on Windows reads the registry's
Uninstall keys and is untested too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psutil

log = logging.getLogger(__name__)

GIB = 1024**3
# Pseudo and network filesystems that are not the machine's fixed disks.
_SKIP_FSTYPES = {
    "tmpfs", "devtmpfs", "squashfs", "overlay", "proc", "sysfs", "cgroup", "cgroup2", "devpts",
    "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "autofs", "fusectl", "configfs",
    "ramfs", "hugetlbfs", "nsfs", "iso9660", "udf", "nfs", "nfs4", "cifs", "smbfs", "fuse.sshfs",
    "binfmt_misc", "efivarfs", "rpc_pipefs", "fuse.lxcfs", "fuse.portal", "zram",
}
SERVICE_NAME = re.compile(r"^[A-Za-z0-9@_:][A-Za-z0-9@._:\-]{0,254}$")  # never starts like an option


class Service(msgspec.Struct, omit_defaults=True):
    name: str
    status: str
    pid: int | None = None


class Disk(msgspec.Struct):
    mountpoint: str
    fstype: str
    used_gb: float
    total_gb: float
    percent: float


class Sample(msgspec.Struct, omit_defaults=True):
    """One collection, in the API contract's ``POST /api/agents/{id}/metrics`` item shape."""

    collected_at: str
    cpu_percent: float | None = None
    memory_used_gb: float | None = None
    memory_percent: float | None = None
    disk_used_gb: float | None = None
    disk_percent: float | None = None
    load_average: list[float] | None = None
    uptime_seconds: int | None = None
    network_rx_bytes: int | None = None
    network_tx_bytes: int | None = None
    services: list[Service] | None = None
    disks: list[Disk] | None = None
    errors: dict[str, str] | None = None


def utc_stamp(ts: float | None = None) -> str:
    """ISO 8601 UTC with microseconds: unique per sample, stable across re-sends."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clamp_pct(value: float) -> float:
    return round(min(100.0, max(0.0, float(value))), 2)


class Collector:
    """Runs every collector; create once and keep (CPU percent needs the previous reading)."""

    def __init__(self, services: list[str] | None = None,
                 extra: dict[str, Callable[[Sample], None]] | None = None) -> None:
        self.services = [s for s in (services or []) if SERVICE_NAME.match(s)]
        self._collectors: dict[str, Callable[[Sample], None]] = {
            "cpu": self._cpu,
            "memory": self._memory,
            "disk": self._disk,
            "load": self._load,
            "uptime": self._uptime,
            "network": self._network,
        }
        if self.services:
            self._collectors["services"] = self._services
        self._collectors.update(extra or {})
        self._last_errors: dict[str, str] = {}
        self._primed_at = self.prime()

    @staticmethod
    def prime() -> float:
        """Start psutil's CPU measurement window so the first sample is a real percentage.

        ``cpu_percent(interval=None)`` compares with the previous call; the very first call has
        nothing to compare with and returns a meaningless 0.0.
        """
        psutil.cpu_percent(interval=None)
        return time.monotonic()

    def sample(self, ts: float | None = None) -> Sample:
        s = Sample(collected_at=utc_stamp(ts))
        errors: dict[str, str] = {}
        for name, fn in self._collectors.items():
            try:
                fn(s)
            except Exception as exc:  # one broken collector must never stop the others
                errors[name] = f"{type(exc).__name__}: {exc}"[:500]
        # Log changes only: a collector that fails every interval would otherwise flood the log.
        for name, error in errors.items():
            if self._last_errors.get(name) != error:
                log.warning("collector.failed", extra={"collector": name, "error": error})
        for name in self._last_errors.keys() - errors.keys():
            log.info("collector.recovered", extra={"collector": name})
        self._last_errors = errors
        if errors:
            s.errors = errors
        return s

    def _cpu(self, s: Sample) -> None:
        # A window shorter than 0.1 s is all rounding noise: wait out the rest of it once.
        short = 0.1 - (time.monotonic() - self._primed_at)
        if short > 0:
            time.sleep(short)
        s.cpu_percent = _clamp_pct(psutil.cpu_percent(interval=None))
        self._primed_at = time.monotonic()

    @staticmethod
    def _memory(s: Sample) -> None:
        vm = psutil.virtual_memory()
        s.memory_used_gb = round((vm.total - vm.available) / GIB, 3)
        s.memory_percent = _clamp_pct(vm.percent)

    @staticmethod
    def _disk(s: Sample) -> None:
        disks = fixed_disks()
        s.disks = disks
        if disks:
            fullest = max(disks, key=lambda d: d.percent)
            s.disk_used_gb, s.disk_percent = fullest.used_gb, fullest.percent

    @staticmethod
    def _load(s: Sample) -> None:
        s.load_average = [round(x, 2) for x in psutil.getloadavg()]

    @staticmethod
    def _uptime(s: Sample) -> None:
        s.uptime_seconds = max(0, int(time.time() - psutil.boot_time()))

    @staticmethod
    def _network(s: Sample) -> None:
        rx = tx = 0
        for nic, c in psutil.net_io_counters(pernic=True).items():
            if nic == "lo" or nic.startswith("Loopback"):
                continue
            rx += c.bytes_recv
            tx += c.bytes_sent
        s.network_rx_bytes, s.network_tx_bytes = rx, tx

    def _services(self, s: Sample) -> None:
        s.services = service_states(self.services)


def fixed_disks() -> list[Disk]:
    """Usage of each fixed, local filesystem, once per device (bind mounts repeat devices)."""
    seen: set[str] = set()
    out: list[Disk] = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype.lower() in _SKIP_FSTYPES or "cdrom" in part.opts or "removable" in part.opts:
            continue
        if part.device in seen:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        if usage.total == 0:
            continue
        seen.add(part.device)
        out.append(Disk(part.mountpoint, part.fstype, round(usage.used / GIB, 3),
                        round(usage.total / GIB, 3), _clamp_pct(usage.percent)))
    if not out:  # containers: only overlay mounts; report the root filesystem
        usage = psutil.disk_usage("/" if os.name != "nt" else "C:\\")
        out.append(Disk("/", "unknown", round(usage.used / GIB, 3), round(usage.total / GIB, 3),
                        _clamp_pct(usage.percent)))
    return out


# -- services -------------------------------------------------------------------------------

_SYSTEMD_STATUS = {"active": "running", "reloading": "running", "inactive": "stopped",
                   "activating": "starting", "deactivating": "stopping", "failed": "error"}


class ServiceQueryFailed(RuntimeError):
    """The platform's service manager could not be asked."""


def service_states(names: list[str]) -> list[Service]:
    if not names:
        return []
    if sys.platform == "win32":
        return _windows_services(names)
    if shutil.which("systemctl") is None:
        raise ServiceQueryFailed("systemctl not found")
    units = [n if "." in n else n + ".service" for n in names]
    try:
        states = parse_systemctl_json(_run(["systemctl", "list-units", "--all", "--no-pager",
                                            "--output=json", "--", *units]))
        pids = {}  # the JSON listing has no PIDs; ask for them (cheap, one call)
        for name, status, pid in parse_systemctl_show(
                _run(["systemctl", "show", "--no-pager", "-p", "Id", "-p", "ActiveState",
                      "-p", "MainPID", "--", *units])):
            pids[name] = pid
            states.setdefault(name, status)
    except (ServiceQueryFailed, ValueError):
        # systemd older than 246 has no --output=json: ``systemctl show`` works everywhere.
        states, pids = {}, {}
        for name, status, pid in parse_systemctl_show(
                _run(["systemctl", "show", "--no-pager", "-p", "Id", "-p", "ActiveState",
                      "-p", "MainPID", "--", *units])):
            states[name], pids[name] = status, pid
    out = []
    for name, unit in zip(names, units, strict=True):
        out.append(Service(name=name, status=states.get(unit, "not_found"), pid=pids.get(unit)))
    return out


def _run(argv: list[str], timeout: float = 10) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceQueryFailed(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0 and not proc.stdout.strip():
        raise ServiceQueryFailed(f"{' '.join(argv[:2])} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def parse_systemctl_json(text: str) -> dict[str, str]:
    """``systemctl list-units --output=json`` -> {unit: status}. ValueError if not JSON."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("systemctl JSON output is not a list")
    out = {}
    for item in data:
        unit = str(item.get("unit", ""))
        if item.get("load") == "not-found":
            out[unit] = "not_found"
        else:
            out[unit] = _SYSTEMD_STATUS.get(str(item.get("active")), str(item.get("active")))
    return out


def parse_systemctl_show(text: str) -> list[tuple[str, str, int | None]]:
    """``systemctl show -p Id -p ActiveState -p MainPID a b`` (blank-line separated blocks)."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in props:
            continue
        pid = int(props.get("MainPID", "0") or 0)
        state = props.get("ActiveState", "unknown")
        status = "not_found" if props.get("LoadState") == "not-found" else _SYSTEMD_STATUS.get(state, state)
        out.append((props["Id"], status, pid or None))
    return out


def _windows_services(names: list[str]) -> list[Service]:  # pragma: no cover - needs Windows
    out = []
    for name in names:
        try:
            info = getattr(psutil, "win_service_get")(name).as_dict()  # noqa: B009 - Windows only
        except psutil.NoSuchProcess:
            out.append(Service(name=name, status="not_found"))
            continue
        status = {"running": "running", "stopped": "stopped", "start_pending": "starting",
                  "stop_pending": "stopping", "paused": "stopped"}.get(info["status"], info["status"])
        out.append(Service(name=name, status=status, pid=info.get("pid")))
    return out


# -- software inventory ---------------------------------------------------------------------

class Software(msgspec.Struct, omit_defaults=True):
    """One installed package, in the ``POST /api/agents/{id}/inventory`` item shape."""

    name: str
    version: str | None = None
    vendor: str | None = None
    install_date: str | None = None
    software_type: str | None = None


def inventory() -> tuple[str, list[Software]]:
    """(source, packages) from dpkg, rpm or the Windows registry; sorted, names unique."""
    if sys.platform == "win32":  # pragma: no cover - needs Windows
        return "windows-registry", _dedupe(_windows_software())
    if shutil.which("dpkg-query"):
        fmt = "${binary:Package}\t${Version}\t${Maintainer}\t${db:Status-Abbrev}\t${Section}\n"
        text = _run(["dpkg-query", "-W", "-f=" + fmt], 60)
        return "dpkg", _dedupe(parse_dpkg(text))
    if shutil.which("rpm"):
        fmt = "%{NAME}.%{ARCH}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{INSTALLTIME}\t%{GROUP}\n"
        text = _run(["rpm", "-qa", "--qf", fmt], 60)
        return "rpm", _dedupe(parse_rpm(text))
    raise ServiceQueryFailed("no package manager found (dpkg-query, rpm)")


def parse_dpkg(text: str) -> list[Software]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 4 or not parts[3].startswith("ii"):
            continue  # only installed packages, not removed-with-config ("rc")
        out.append(Software(name=parts[0][:255], version=parts[1][:100] or None,
                            vendor=parts[2][:255] or None,
                            software_type=_type_from_section(parts[4] if len(parts) > 4 else "")))
    return out


def parse_rpm(text: str) -> list[Software]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0]:
            continue
        installed = None
        if parts[3].isdigit():
            installed = datetime.fromtimestamp(int(parts[3]), tz=UTC).date().isoformat()
        vendor = None if parts[2] in ("", "(none)") else parts[2][:255]
        out.append(Software(name=parts[0][:255], version=parts[1][:100] or None, vendor=vendor,
                            install_date=installed,
                            software_type=_type_from_section(parts[4] if len(parts) > 4 else "")))
    return out


def _type_from_section(section: str) -> str:
    section = section.lower()
    if section.startswith(("kernel", "libs", "libdevel", "admin", "system")) or "librar" in section:
        return "system"
    return "application"


def _dedupe(items: list[Software]) -> list[Software]:
    by_key: dict[tuple[str, str | None], Software] = {}
    for item in items:
        by_key.setdefault((item.name, item.version), item)
    return sorted(by_key.values(), key=lambda s: (s.name, s.version or ""))


def inventory_digest(items: list[Software]) -> str:
    """Stable fingerprint: inventory is sent only when this changes."""
    return hashlib.sha256(msgspec.json.encode(items)).hexdigest()


def _windows_software() -> list[Software]:  # pragma: no cover - needs Windows
    import importlib

    winreg: Any = importlib.import_module("winreg")

    out = []
    roots = [r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
             r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall"]
    for root in roots:
        try:
            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, root)
        except OSError:
            continue
        for i in range(winreg.QueryInfoKey(key)[0]):
            try:
                sub = winreg.OpenKey(key, winreg.EnumKey(key, i))
                name = winreg.QueryValueEx(sub, "DisplayName")[0]
            except OSError:
                continue

            def value(field: str, sub: object = sub) -> str | None:
                try:
                    return str(winreg.QueryValueEx(sub, field)[0]) or None
                except OSError:
                    return None

            date = value("InstallDate")
            iso = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if date and len(date) == 8 and date.isdigit() else None
            out.append(Software(name=str(name)[:255], version=(value("DisplayVersion") or "")[:100] or None,
                                vendor=(value("Publisher") or "")[:255] or None, install_date=iso,
                                software_type="application"))
    return out


def system_info() -> dict[str, object]:
    """What registration sends about the machine (the API contract's register payload fields)."""
    import platform
    import socket

    vm = psutil.virtual_memory()
    disks = fixed_disks()
    ip, mac = _primary_address()
    os_type = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")
    arch = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(arch, arch)
    return {
        "hostname": socket.gethostname(),
        "os_type": os_type,
        "os_version": _os_version(),
        "os_architecture": arch,
        "ip_address": ip,
        "mac_address": mac,
        "cpu_model": _cpu_model(),
        "total_memory_gb": round(vm.total / GIB, 2),
        "total_disk_gb": round(sum(d.total_gb for d in disks), 2),
    }


def _os_version() -> str:
    import platform

    if sys.platform.startswith("linux"):
        try:
            with open("/etc/os-release", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("PRETTY_NAME="):
                        return line.split("=", 1)[1].strip().strip('"')[:100]
        except OSError:
            pass
    return f"{platform.system()} {platform.release()}"[:100]


def _cpu_model() -> str | None:
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()[:255]
    except OSError:
        pass
    return platform.processor()[:255] or None


def _primary_address() -> tuple[str | None, str | None]:
    """The first non-loopback IPv4 address and the MAC of the same interface."""
    import socket

    addrs = psutil.net_if_addrs()
    for nic, items in addrs.items():
        if nic == "lo" or nic.startswith("Loopback"):
            continue
        ipv4 = next((a.address for a in items if a.family == socket.AF_INET), None)
        if ipv4 is None:
            continue
        mac = next((a.address for a in items if a.family == psutil.AF_LINK), None)
        if mac:
            mac = mac.replace("-", ":").upper()[:17]
        return ipv4, mac
    return None, None
