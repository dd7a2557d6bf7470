"""Collectors on this machine (psutil), parsers of dpkg/rpm output, failure isolation, the package
database's signature (services: ``test_services``)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import msgspec
import pytest
from rts_agent import collect
from rts_agent.collect import Collector, Sample


def test_sample_has_the_plan_columns_with_sane_values() -> None:
    c = Collector()
    s = c.sample()
    assert datetime.fromisoformat(s.collected_at.replace("Z", "+00:00")).tzinfo is not None
    assert s.cpu_percent is not None and 0 <= s.cpu_percent <= 100
    assert s.memory_used_gb is not None and s.memory_used_gb > 0
    assert s.memory_percent is not None and 0 < s.memory_percent <= 100
    assert s.disk_percent is not None and 0 <= s.disk_percent <= 100
    assert s.disks and s.disk_percent == max(d.percent for d in s.disks)  # the fullest filesystem
    assert s.load_average is not None and len(s.load_average) == 3
    assert s.uptime_seconds is not None and s.uptime_seconds > 0
    assert s.network_rx_bytes is not None and s.network_rx_bytes >= 0
    assert s.errors is None
    # It round-trips through the wire encoding with the plan's field names.
    wire = msgspec.json.decode(msgspec.json.encode(s))
    assert {"collected_at", "cpu_percent", "memory_used_gb", "memory_percent", "disk_used_gb",
            "disk_percent", "load_average", "uptime_seconds", "network_rx_bytes"} <= set(wire)


PRIMING = """
import threading, time, sys
import psutil
from rts_agent.collect import Collector

def burn():
    end = time.monotonic() + 0.8
    while time.monotonic() < end:
        pass

t = threading.Thread(target=burn)
t.start()
time.sleep(0.2)
if sys.argv[1] == "collector":
    value = Collector().sample().cpu_percent   # sampled at once after start-up
else:
    psutil.cpu_percent(interval=None)          # what an unprimed agent would see
    value = psutil.cpu_percent(interval=None)
t.join()
print(value)
"""


def test_first_cpu_sample_is_measured_not_the_unprimed_zero() -> None:
    # A fresh process each, the CPU busy: a percentage over a (near) empty window is 0.0; the
    # collector primes psutil and measures at least 0.1 s before its first sample.
    def first_value(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", PRIMING, mode], capture_output=True, text=True,
                             timeout=30, check=True)
        return float(out.stdout.strip())

    # The control (back-to-back raw calls) reads 0.0 most of the time, not always (a clock tick
    # can land in between), so the collector must be non-zero every time, three times over.
    assert [first_value("collector") > 0 for _ in range(3)] == [True, True, True]


def test_samples_have_distinct_timestamps() -> None:
    c = Collector()
    stamps = {c.sample().collected_at for _ in range(5)}
    assert len(stamps) == 5


def test_a_failing_collector_is_reported_and_the_others_still_run() -> None:
    def broken(_: Sample) -> None:
        raise OSError("sensor on fire")

    c = Collector(extra={"broken": broken})
    s = c.sample()
    assert s.errors == {"broken": "OSError: sensor on fire"}
    assert s.cpu_percent is not None and s.memory_percent is not None and s.disk_percent is not None


def test_service_names_that_could_be_options_or_injection_are_ignored() -> None:
    c = Collector(services=["nginx", "--all", "a;rm -rf /", "ok@1.service"])
    assert c.services == ["nginx", "ok@1.service"]


def test_parse_dpkg_keeps_installed_packages_only() -> None:
    text = ("nginx\t1.22.1-9\tDebian Nginx Maintainers <x@y>\tii \thttpd\n"
            "libc6:amd64\t2.36-9\tGNU Libc Maintainers <a@b>\tii \tlibs\n"
            "oldpkg\t1.0\tSomeone\trc \tmisc\n")
    items = collect.parse_dpkg(text)
    assert [(i.name, i.version, i.software_type) for i in items] == [
        ("nginx", "1.22.1-9", "application"), ("libc6:amd64", "2.36-9", "system")]


def test_parse_rpm() -> None:
    text = "bash.x86_64\t5.2.15-1.fc38\tFedora Project\t1700000000\tSystem Environment/Shells\n" \
           "gpg-pubkey.(none)\tabc-def\t(none)\t1700000001\tPublic Keys\n"
    items = collect.parse_rpm(text)
    assert items[0].name == "bash.x86_64" and items[0].vendor == "Fedora Project"
    assert items[0].install_date == "2023-11-14" and items[0].software_type == "system"
    assert items[1].vendor is None


def test_inventory_of_this_machine_and_its_digest() -> None:
    source, items = collect.inventory()
    assert source in ("dpkg", "rpm") and len(items) > 10
    assert len({(i.name, i.version) for i in items}) == len(items)
    assert collect.inventory_digest(items) == collect.inventory_digest(list(items))
    assert collect.inventory_digest(items) != collect.inventory_digest(items[1:])


def test_system_info_for_registration() -> None:
    info = collect.system_info()
    assert info["os_type"] == "linux" and info["hostname"]
    assert isinstance(info["total_memory_gb"], float) and info["total_memory_gb"] > 0


def test_the_package_database_signature_changes_with_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = tmp_path / "status"
    status.write_text("Package: a\n")
    monkeypatch.setattr(collect, "PACKAGE_DATABASES", (str(tmp_path / "rpmdb.sqlite"), str(status)))
    first = collect.package_db_signature()
    assert first is not None and str(status) in first and "rpmdb" not in first
    assert collect.package_db_signature() == first  # a stat, not a read: same answer until it changes
    status.write_text("Package: a\nPackage: b\n")
    assert collect.package_db_signature() != first
    monkeypatch.setattr(collect, "PACKAGE_DATABASES", (str(tmp_path / "none"),))
    assert collect.package_db_signature() is None  # nothing to watch: the inventory falls back to a timer
