"""The agent as a Debian package, ``rts-agent_<version>_all.deb``, built from the same sources as
the wheel (``agent_wheel``) and the files in ``agent/packaging/debian/``.

What the package does is in those files: it ships the agent's wheel and a systemd unit; its
postinst puts the agent in a venv under ``/opt/rts-agent`` on the system's own python3-psutil,
python3-aiohttp and python3-msgspec (Debian 13 and later have versions new enough; nothing is
downloaded) and registers when ``RTS_AGENT_SERVER`` and ``RTS_AGENT_TOKEN`` are set; prerm stops
the unit; postrm removes the venv, and on purge the agent's state. Debian 12's packages are too
old for the agent's dependencies: there, ``install.sh`` is the route.

Built here rather than with ``dpkg-deb`` so the server can serve it without Debian's tools: a
.deb is an ``ar`` archive of ``debian-binary``, ``control.tar.gz`` and ``data.tar.gz``. Fixed
timestamps and owners make the same sources give the same bytes (``dpkg-deb --info`` and ``dpkg
-i`` read it: tests/test_installers.py).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import tarfile
from functools import lru_cache
from pathlib import Path

from rts_monitor.installers import agent_wheel

_MTIME = 1_577_836_800  # 2020-01-01: reproducible archives
_SCRIPTS = ("postinst", "prerm", "postrm")


AgentDeb = agent_wheel.AgentPackage


def packaging_dir() -> Path:
    return agent_wheel.sources() / "packaging" / "debian"


def _tar(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A gzipped tar of (path, content, mode); directories are made for every parent."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        made: set[str] = set()
        for path, _, _ in entries:
            parts = path.strip("./").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "./" + "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _MTIME
                    tar.addfile(info)
        for path, content, mode in entries:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(content), mode, _MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=_MTIME)


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{_MTIME:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
        out += header + data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


@lru_cache(maxsize=1)
def deb() -> AgentDeb:
    whl = agent_wheel.wheel()
    src = packaging_dir()
    data_files = [
        (f"./usr/share/rts-agent/{whl.filename}", whl.data, 0o644),
        ("./lib/systemd/system/rts-agent.service", (src / "rts-agent.service").read_bytes(), 0o644),
        ("./usr/share/doc/rts-agent/README", b"rts-monitor agent. Configuration and spool: /var/lib/rts-agent.\n",
         0o644),
    ]
    installed_kib = (sum(len(c) for _, c, _ in data_files) + 1023) // 1024
    control = (src / "control").read_text().replace("@VERSION@", whl.version).replace(
        "@INSTALLED_SIZE@", str(installed_kib))
    md5sums = "".join(f"{hashlib.md5(c).hexdigest()}  {p.removeprefix('./')}\n" for p, c, _ in data_files)
    control_files = [("./control", control.encode(), 0o644), ("./md5sums", md5sums.encode(), 0o644)]
    control_files += [(f"./{s}", (src / s).read_bytes(), 0o755) for s in _SCRIPTS]
    data = _ar([("debian-binary", b"2.0\n"), ("control.tar.gz", _tar(control_files)),
                ("data.tar.gz", _tar(data_files))])
    return AgentDeb(whl.name, whl.version, f"rts-agent_{whl.version}_all.deb", data)


def main(argv: list[str] | None = None) -> int:
    """``python -m rts_monitor.installers.agent_deb --out DIR``: write the package to a folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"))
    args = parser.parse_args(argv)
    pkg = deb()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / pkg.filename).write_bytes(pkg.data)
    print(args.out / pkg.filename)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
