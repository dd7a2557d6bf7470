"""A stand-in for systemd's D-Bus API on a private bus, for machines without systemd (this one).

It answers what ``rts_agent.services`` asks, in systemd's own signatures (org.freedesktop.systemd1(5)):
``Manager.ListUnitsByNames(as) -> a(ssssssouso)`` and ``Properties.Get`` of ``Service.MainPID``
(``u``). Every other call gets ``UnknownMethod``.

    python fake_systemd.py ADDRESS [NAME[=STATE] ...]

STATE is ``running`` (the default), ``failed``, ``stopped`` or ``activating``; a name not listed
does not exist (``not-found``). Prints ``ready`` once it owns ``org.freedesktop.systemd1``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

# state -> (load_state, active_state, sub_state)
STATES = {
    "running": ("loaded", "active", "running"),
    "failed": ("loaded", "failed", "failed"),
    "stopped": ("loaded", "inactive", "dead"),
    "activating": ("loaded", "activating", "start"),
}
MISSING = ("not-found", "inactive", "dead")


def unit_path(unit: str) -> str:
    """systemd's object path escaping: anything but [A-Za-z0-9] becomes _XX (hex)."""
    return "/org/freedesktop/systemd1/unit/" + "".join(
        c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in unit)


def main(address: str, specs: list[str]) -> None:
    units: dict[str, tuple[str, str, str]] = {}
    for spec in specs:
        name, _, state = spec.partition("=")
        units[name if "." in name else name + ".service"] = STATES[state or "running"]
    pids = {unit_path(u): 1000 + i for i, u in enumerate(units)}
    conn = open_dbus_connection(address)
    conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.systemd1"))
    print("ready", flush=True)
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "ListUnitsByNames":
            rows = []
            for name in msg.body[0]:
                load, active, sub = units.get(name, MISSING)
                rows.append((name, f"stand-in {name}", load, active, sub, "", unit_path(name), 0, "", "/"))
            conn.send(new_method_return(msg, "a(ssssssouso)", (rows,)))
        elif member == "Get" and msg.body[1] == "MainPID":
            path = str(msg.header.fields.get(HeaderFields.path))
            active = next((units[u][1] for u in units if unit_path(u) == path), "inactive")
            pid = pids.get(path, 0) if active in ("active", "activating") else 0
            conn.send(new_method_return(msg, "v", (("u", pid),)))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))



def start(tmp: Path, specs: list[str]) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A private ``dbus-daemon`` and this stand-in on it: (bus address, processes to terminate)."""
    sock = tmp / "system_bus_socket"
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={sock}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            daemon.kill()
            raise RuntimeError("dbus-daemon did not start")
        time.sleep(0.02)
    address = f"unix:path={sock}"
    fake = subprocess.Popen([sys.executable, __file__, address, *specs], stdout=subprocess.PIPE)
    assert fake.stdout is not None
    if fake.stdout.readline().strip() != b"ready":
        fake.kill()
        daemon.kill()
        raise RuntimeError("the stand-in systemd did not start")
    return address, [fake, daemon]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
