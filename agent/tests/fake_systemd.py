"""A stand-in for systemd's D-Bus API on a private bus, for machines without systemd (this one).

It answers what ``rts_agent.services`` asks, in systemd's own signatures (org.freedesktop.systemd1(5)):
``Manager.ListUnitsByNames(as) -> a(ssssssouso)`` and ``Properties.Get`` of ``Service.MainPID``
(``u``). Every other call gets ``UnknownMethod``.

    python fake_systemd.py ADDRESS [NAME[=STATE] ...]

With ``FAKE_SYSTEMD_PIDDIR`` set, a unit with a ``<unit>.pid`` file there is a real process the
test controls: running (with that MainPID) while the process lives, failed once it died. The
``systemctl`` of ``write_systemctl`` starts and stops such processes, as the agent's service
commands would on a real machine.

STATE is ``running`` (the default), ``failed``, ``stopped`` or ``activating``; a name not listed
does not exist (``not-found``). Prints ``ready`` once it owns ``org.freedesktop.systemd1``.
"""

from __future__ import annotations

import os
import shlex
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


def _pid_state(unit: str) -> tuple[tuple[str, str, str], int] | None:
    """(state, MainPID) of a unit backed by a real process, or None when it is not one."""
    piddir = os.environ.get("FAKE_SYSTEMD_PIDDIR")
    if not piddir:
        return None
    try:
        pid = int((Path(piddir) / f"{unit}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead for systemd too
            alive = fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        alive = False
    return (STATES["running"], pid) if alive else (STATES["failed"], 0)


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
                real = _pid_state(name)
                load, active, sub = real[0] if real else units.get(name, MISSING)
                rows.append((name, f"stand-in {name}", load, active, sub, "", unit_path(name), 0, "", "/"))
            conn.send(new_method_return(msg, "a(ssssssouso)", (rows,)))
        elif member == "Get" and msg.body[1] == "MainPID":
            path = str(msg.header.fields.get(HeaderFields.path))
            piddir = os.environ.get("FAKE_SYSTEMD_PIDDIR")
            real = next((s for f in (Path(piddir).glob("*.pid") if piddir else [])
                         if unit_path(f.name[:-4]) == path and (s := _pid_state(f.name[:-4]))), None)
            if real is not None:
                conn.send(new_method_return(msg, "v", (("u", real[1]),)))
                continue
            active = next((units[u][1] for u in units if unit_path(u) == path), "inactive")
            pid = pids.get(path, 0) if active in ("active", "activating") else 0
            conn.send(new_method_return(msg, "v", (("u", pid),)))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))



SYSTEMCTL = """#!/bin/sh
# A systemd-less stand-in for systemctl: ACTION --no-pager -- NAME, for units backed by a process.
piddir=%(piddir)s
action=$1
for arg; do name=$arg; done
case $name in *.*) unit=$name ;; *) unit=$name.service ;; esac
echo "$action $unit" >> "$piddir/systemctl.log"
case $action in
  start|restart)
    if [ -f "$piddir/$unit.broken" ]; then echo "Job for $unit failed" >&2; exit 1; fi
    if [ -f "$piddir/$unit.pid" ]; then kill "$(cat "$piddir/$unit.pid")" 2>/dev/null; fi
    setsid sleep 3600 </dev/null >/dev/null 2>&1 &
    echo $! > "$piddir/$unit.pid"
    echo "started $unit" ;;
  stop) kill "$(cat "$piddir/$unit.pid")" 2>/dev/null; echo "stopped $unit" ;;
  status) echo "$unit" ;;
  *) echo "unknown action $action" >&2; exit 1 ;;
esac
"""


def write_systemctl(bindir: Path, piddir: Path) -> Path:
    """A ``systemctl`` in ``bindir`` that starts/stops ``sleep`` processes recorded in ``piddir``."""
    bindir.mkdir(parents=True, exist_ok=True)
    piddir.mkdir(parents=True, exist_ok=True)
    path = bindir / "systemctl"
    path.write_text(SYSTEMCTL % {"piddir": shlex.quote(str(piddir))})
    path.chmod(0o755)
    return path


def start(tmp: Path, specs: list[str], piddir: Path | None = None) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A private ``dbus-daemon`` and this stand-in on it: (bus address, processes to terminate).
    ``piddir``: units backed by real processes (``write_systemctl``)."""
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
    env = {**os.environ, **({"FAKE_SYSTEMD_PIDDIR": str(piddir)} if piddir else {})}
    fake = subprocess.Popen([sys.executable, __file__, address, *specs], stdout=subprocess.PIPE, env=env)
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
