"""Collectors: what the agent measures, with psutil and the platform's service/package tools.

Each collector is a small function filling part of one ``Sample``. ``Collector.sample()`` runs
them all and records any failure in ``Sample.errors`` (collector name -> message) instead of
raising, so a broken service manager never costs the CPU figure (services are read by
``rts_agent.services``). The field names are the API contract's metric payload; ``disks`` adds
the per-filesystem detail whose fullest entry fills ``disk_used_gb``/``disk_percent``.

Windows: CPU, memory, disks (fixed drives), uptime, network and services (``psutil.win_service_*``)
use psutil's Windows APIs; load averages are psutil's emulation (zeros for the first 5 seconds).
The Windows paths are untested here (no Windows host); inventory on Windows reads the registry's
Uninstall keys and is untested too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psutil

from rts_agent.services import SERVICE_NAME, Service, ServiceQueryFailed, ServiceReader, run

log = logging.getLogger(__name__)

GIB = 1024**3
# Pseudo and network filesystems that are not the machine's fixed disks.
_SKIP_FSTYPES = {
    "tmpfs", "devtmpfs", "squashfs", "overlay", "proc", "sysfs", "cgroup", "cgroup2", "devpts",
    "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "autofs", "fusectl", "configfs",
    "ramfs", "hugetlbfs", "nsfs", "iso9660", "udf", "nfs", "nfs4", "cifs", "smbfs", "fuse.sshfs",
    "binfmt_misc", "efivarfs", "rpc_pipefs", "fuse.lxcfs", "fuse.portal", "zram",
}


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
        self._service_reader: ServiceReader | None = None
        if self.services:
            self._service_reader = ServiceReader()
            self._collectors["services"] = self._services
        self._collectors.update(extra or {})
        self._last_errors: dict[str, str] = {}
        self._primed_at = self.prime()

    def close(self) -> None:
        if self._service_reader is not None:
            self._service_reader.close()

    def watch(self, services: list[str]) -> None:
        """Watch these services from the next sample on (the portal changed the list)."""
        self.services = [s for s in services if SERVICE_NAME.match(s)]
        if self.services and self._service_reader is None:
            self._service_reader = ServiceReader()
        if self.services:
            self._collectors["services"] = self._services
        else:
            self._collectors.pop("services", None)

    def read_services(self) -> list[Service]:
        """The monitored services' states now (the watch loop's cheap check between samples)."""
        if not self.services or self._service_reader is None:
            return []
        return self._service_reader.read(self.services)

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
        assert self._service_reader is not None
        s.services = self._service_reader.read(self.services)


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
    import shutil

    if sys.platform == "win32":  # pragma: no cover - needs Windows
        return "windows-registry", _dedupe(_windows_software())
    if shutil.which("dpkg-query"):
        fmt = "${binary:Package}\t${Version}\t${Maintainer}\t${db:Status-Abbrev}\t${Section}\n"
        text = run(["dpkg-query", "-W", "-f=" + fmt], 60)
        return "dpkg", _dedupe(parse_dpkg(text))
    if shutil.which("rpm"):
        fmt = "%{NAME}.%{ARCH}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{INSTALLTIME}\t%{GROUP}\n"
        text = run(["rpm", "-qa", "--qf", fmt], 60)
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
    import hashlib

    return hashlib.sha256(msgspec.json.encode(items)).hexdigest()


# Files that change whenever a package is installed, upgraded or removed: dpkg rewrites its status
# file; rpm keeps a SQLite database (with its WAL) or, before rpm 4.16, Berkeley DB ``Packages``,
# in /var/lib/rpm or, since Fedora 36, /usr/lib/sysimage/rpm.
PACKAGE_DATABASES = (
    "/var/lib/dpkg/status",
    "/var/lib/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite-wal", "/var/lib/rpm/Packages",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite-wal",
    "/usr/lib/sysimage/rpm/Packages",
)


def package_db_signature() -> str | None:
    """Modification time and size of the package databases present: the inventory is read again
    only when this changes. ``None`` where there is none to watch (Windows: the registry)."""
    if sys.platform == "win32":  # pragma: no cover - needs Windows
        return None
    parts = []
    for path in PACKAGE_DATABASES:
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}")
    return ";".join(parts) or None


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
