"""Service states: systemd's D-Bus API (against a stand-in on a private bus: this machine has no
systemd), the one-process ``systemctl show`` fallback's parser, and a machine without systemd."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import fake_systemd
import pytest
from rts_agent import services
from rts_agent.collect import Collector
from rts_agent.services import Service, ServiceQueryFailed, ServiceReader

needs_dbus = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="dbus-daemon not installed")
no_systemd = pytest.mark.skipif(os.path.isdir(services.SYSTEMD_RUNNING), reason="this machine runs systemd")


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    address, procs = fake_systemd.start(tmp_path, ["cron", "ssh=failed", "nginx=stopped", "redis=activating"])
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    yield address
    fake_systemd.stop(procs)


@needs_dbus
def test_states_and_pids_come_from_dbus_in_one_listing(bus: str) -> None:
    reader = ServiceReader()
    got = reader.read(["cron", "ssh", "nginx", "redis", "nope", "cron.service"])
    assert reader.last_path == "dbus" and reader.dbus_error is None
    assert [(s.name, s.status) for s in got] == [
        ("cron", "running"), ("ssh", "error"), ("nginx", "stopped"), ("redis", "starting"),
        ("nope", "not_found"), ("cron.service", "running")]
    pids = {s.name: s.pid for s in got}
    assert pids["cron"] and pids["cron"] == pids["cron.service"] and pids["redis"]
    assert pids["ssh"] is None and pids["nginx"] is None and pids["nope"] is None
    connection = reader._bus
    assert reader.read(["cron"]) == [Service("cron", "running", pids["cron"])]
    assert reader._bus is connection  # one connection, kept
    reader.close()


@needs_dbus
@no_systemd
def test_a_lost_bus_falls_back_and_dbus_is_tried_again_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address, procs = fake_systemd.start(tmp_path, ["cron"])
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    reader = ServiceReader()
    assert reader.read(["cron"])[0].status == "running"
    fake_systemd.stop(procs)
    # No bus and no systemd to run systemctl against: an error, nothing spawned.
    with pytest.raises(ServiceQueryFailed, match="systemd is not running"):
        reader.read(["cron"])
    assert reader.dbus_error and reader._bus is None
    with pytest.raises(ServiceQueryFailed):  # not retried at once: no connection attempt per sample
        reader.read(["cron"])
    address, procs = fake_systemd.start(tmp_path, ["cron=failed"])
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    monkeypatch.setattr(reader, "_dbus_retry_at", 0.0)  # as if DBUS_RETRY_SECONDS had passed
    try:
        assert reader.read(["cron"])[0].status == "error" and reader.last_path == "dbus"
    finally:
        fake_systemd.stop(procs)


@needs_dbus
def test_the_collector_reports_services_read_over_dbus(bus: str) -> None:
    c = Collector(services=["cron", "ssh"])
    s = c.sample()
    assert s.errors is None, s.errors
    assert s.services is not None and [x.status for x in s.services] == ["running", "error"]
    c.close()


@no_systemd
def test_without_systemd_nothing_is_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")

    def no_process(*_: object, **__: object) -> None:
        raise AssertionError("a process was started")

    monkeypatch.setattr(services.subprocess, "run", no_process)
    s = Collector(services=["nginx"]).sample()
    assert s.errors is not None and "systemd is not running" in s.errors["services"]
    assert s.memory_percent is not None


SYSTEMCTL_SHOW = """Id=nginx.service
LoadState=loaded
ActiveState=active
MainPID=1234

Id=postgresql.service
LoadState=loaded
ActiveState=inactive
MainPID=0

Id=redis.service
LoadState=loaded
ActiveState=activating
MainPID=77

Id=nope.service
LoadState=not-found
ActiveState=inactive
MainPID=0
"""


def test_parse_systemctl_show() -> None:
    assert services.parse_systemctl_show(SYSTEMCTL_SHOW) == [
        ("nginx.service", "running", 1234), ("postgresql.service", "stopped", None),
        ("redis.service", "starting", 77), ("nope.service", "not_found", None)]
