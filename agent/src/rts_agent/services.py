"""The state of monitored services, from the platform's service manager.

``ServiceReader.read(names)`` is what the services collector calls once per sample; it keeps what
is worth keeping between calls (a bus connection), so a loop watching services every few seconds
can call it just as cheaply. On systemd, cheapest first:

1. **D-Bus**, on one system-bus connection kept open (``jeepney``: pure Python, no process):
   ``org.freedesktop.systemd1.Manager.ListUnitsByNames`` answers for every unit at once (loaded
   or not: a unit that does not exist comes back ``not-found``), then one ``Properties.Get`` of
   ``org.freedesktop.systemd1.Service.MainPID`` per running service (org.freedesktop.systemd1(5)).
2. ``systemctl show`` for every unit **in one process**, when there is no system bus, no
   ``jeepney`` or systemd is not on the bus; D-Bus is tried again ``DBUS_RETRY_SECONDS`` later.

Without systemd at all (no ``/run/systemd/system``: the sd_booted(3) test) the reader says so at
once and starts nothing. Windows: psutil's service API (untested here: no Windows host).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec
import psutil

SERVICE_NAME = re.compile(r"^[A-Za-z0-9@_:][A-Za-z0-9@._:\-]{0,254}$")  # never starts like an option
DBUS_RETRY_SECONDS = 300.0
DBUS_TIMEOUT_SECONDS = 5.0
SYSTEMD_RUNNING = "/run/systemd/system"  # sd_booted(3)

# systemd ActiveState -> the API contract's service status
_SYSTEMD_STATUS = {"active": "running", "reloading": "running", "inactive": "stopped",
                   "activating": "starting", "deactivating": "stopping", "failed": "error"}
_HAS_MAIN_PID = {"active", "reloading", "activating", "deactivating"}


class Service(msgspec.Struct, omit_defaults=True):
    name: str
    status: str
    pid: int | None = None


class ServiceQueryFailed(RuntimeError):
    """The platform's service manager could not be asked."""


def unit_name(name: str) -> str:
    return name if "." in name else name + ".service"


def status_of(load_state: str, active_state: str) -> str:
    if load_state == "not-found":
        return "not_found"
    return _SYSTEMD_STATUS.get(active_state, active_state)


class ServiceReader:
    """Reads service states; thread-safe (the collector runs in a worker thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bus: Any = None  # jeepney.io.blocking.DBusConnection
        self._dbus_retry_at = 0.0
        self.last_path: str | None = None  # "dbus" or "systemctl": how the last read was made
        self.dbus_error: str | None = None  # why D-Bus is not used, while it is not

    def close(self) -> None:
        with self._lock:
            self._drop_bus(None)

    def read(self, names: list[str]) -> list[Service]:
        if not names:
            return []
        if sys.platform == "win32":  # pragma: no cover - needs Windows
            return _windows_services(names)
        units = [unit_name(n) for n in names]
        with self._lock:
            states: dict[str, tuple[str, int | None]] | None = None
            if self._connect():
                try:
                    states = self._read_dbus(units)
                    self.last_path = "dbus"
                except Exception as exc:  # the bus went away, or systemd is not on it
                    self._drop_bus(exc)
            if states is None:
                states = _read_systemctl(units)
                self.last_path = "systemctl"
        return [Service(name=name, status=states.get(unit, ("not_found", None))[0], pid=states.get(unit, ("", None))[1])
                for name, unit in zip(names, units, strict=True)]

    # -- D-Bus -------------------------------------------------------------------------------
    def _connect(self) -> bool:
        if self._bus is not None:
            return True
        if time.monotonic() < self._dbus_retry_at:
            return False
        try:
            from jeepney.io.blocking import open_dbus_connection

            self._bus = open_dbus_connection(bus="SYSTEM", auth_timeout=DBUS_TIMEOUT_SECONDS)
        except Exception as exc:  # no jeepney, no bus socket, refused
            self._drop_bus(exc)
            return False
        self.dbus_error = None
        return True

    def _drop_bus(self, exc: BaseException | None) -> None:
        if self._bus is not None:
            with contextlib.suppress(OSError):
                self._bus.close()
        self._bus = None
        if exc is not None:
            self.dbus_error = f"{type(exc).__name__}: {exc}"[:300]
            self._dbus_retry_at = time.monotonic() + DBUS_RETRY_SECONDS

    def _call(self, message: Any) -> Any:
        from jeepney.wrappers import unwrap_msg

        return unwrap_msg(self._bus.send_and_get_reply(message, timeout=DBUS_TIMEOUT_SECONDS))

    def _read_dbus(self, units: list[str]) -> dict[str, tuple[str, int | None]]:
        from jeepney import DBusAddress, Properties, new_method_call

        manager = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                              interface="org.freedesktop.systemd1.Manager")
        # (name, description, load_state, active_state, sub_state, following, unit_path, job_id, ...)
        rows = self._call(new_method_call(manager, "ListUnitsByNames", "as", (units,)))[0]
        # One row per name asked, in that order; by position, an alias finds its unit.
        keys = units if len(rows) == len(units) else [str(row[0]) for row in rows]
        out: dict[str, tuple[str, int | None]] = {}
        for key, row in zip(keys, rows, strict=True):
            name, load_state, active_state, path = str(row[0]), str(row[2]), str(row[3]), str(row[6])
            pid = None
            if name.endswith(".service") and load_state != "not-found" and active_state in _HAS_MAIN_PID:
                unit = DBusAddress(path, bus_name="org.freedesktop.systemd1",
                                   interface="org.freedesktop.systemd1.Service")
                _, value = self._call(Properties(unit).get("MainPID"))[0]
                pid = int(value) or None
            out[key] = (status_of(load_state, active_state), pid)
        return out


def _read_systemctl(units: list[str]) -> dict[str, tuple[str, int | None]]:
    if not os.path.isdir(SYSTEMD_RUNNING):
        raise ServiceQueryFailed(f"systemd is not running here (no {SYSTEMD_RUNNING})")
    import shutil

    if shutil.which("systemctl") is None:
        raise ServiceQueryFailed("systemctl not found")
    text = run(["systemctl", "show", "--no-pager", "-p", "Id", "-p", "LoadState", "-p", "ActiveState",
                "-p", "MainPID", "--", *units])
    rows = parse_systemctl_show(text)
    # One block per unit asked, in that order; by position, an alias finds its unit.
    keys = units if len(rows) == len(units) else [row[0] for row in rows]
    return {key: (status, pid) for key, (_, status, pid) in zip(keys, rows, strict=True)}


def run(argv: list[str], timeout: float = 10) -> str:
    """``argv``'s output; ``ServiceQueryFailed`` if it cannot start, times out or fails silently."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceQueryFailed(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0 and not proc.stdout.strip():
        raise ServiceQueryFailed(f"{' '.join(argv[:2])} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def parse_systemctl_show(text: str) -> list[tuple[str, str, int | None]]:
    """``systemctl show -p Id -p LoadState -p ActiveState -p MainPID a b`` (blank-line separated
    blocks) -> [(unit, status, main pid or None)]."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in props:
            continue
        pid = int(props.get("MainPID", "0") or 0)
        out.append((props["Id"], status_of(props.get("LoadState", ""), props.get("ActiveState", "unknown")),
                    pid or None))
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
