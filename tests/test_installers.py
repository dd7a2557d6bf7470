"""The agent wheel and Debian package the server serves (``GET /agent/package``, ``GET /agent/{file}``),
the .deb installed and purged in a real Debian 13 root, and the server package built from exactly
what the Docker image copies (it must carry the agent's sources)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from rts_monitor.installers import agent_wheel
from tests.fix_api import ApiServer

ROOT = Path(__file__).resolve().parents[1]


def _agent_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "agent" / "pyproject.toml").read_text(), re.M)
    assert match
    return match[1]


async def test_the_served_wheel_is_the_agent_with_valid_metadata_and_record(api: ApiServer) -> None:
    async with api.client() as client:
        info = (await client.get("/agent/package")).json()
        version = _agent_version()
        assert info["name"] == "rts-agent" and info["version"] == version
        assert info["filename"] == f"rts_agent-{version}-py3-none-any.whl"
        assert info["url"] == f"{api.url}/agent/{info['filename']}"
        resp = await client.get(f"/agent/{info['filename']}")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/octet-stream"
        assert hashlib.sha256(resp.content).hexdigest() == info["sha256"] and len(resp.content) == info["size"]
        assert (await client.get("/agent/rts_agent-9.9.9-py3-none-any.whl")).status_code == 404

    whl = zipfile.ZipFile(io.BytesIO(resp.content))
    names = set(whl.namelist())
    sources = {f"rts_agent/{p.name}" for p in (ROOT / "agent" / "src" / "rts_agent").glob("*.py")}
    assert sources <= names
    info_dir = f"rts_agent-{version}.dist-info"
    metadata = whl.read(f"{info_dir}/METADATA").decode()
    assert f"Version: {version}" in metadata and "Requires-Dist: psutil" in metadata
    assert "rts-agent = rts_agent.cli:main" in whl.read(f"{info_dir}/entry_points.txt").decode()
    for line in whl.read(f"{info_dir}/RECORD").decode().splitlines():  # every file's hash and size
        path, digest, size = line.split(",")
        if path.endswith("RECORD"):
            continue
        data = whl.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}" and int(size) == len(data), path
    assert agent_wheel.wheel().data == resp.content  # the same bytes every time (fixed timestamps)


def test_pip_reads_the_served_wheel(api: ApiServer, tmp_path: Path) -> None:
    url = httpx.get(api.url + "/agent/package", timeout=30).json()["url"]
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                          "--quiet", "--report", "-", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"version": "' + _agent_version() + '"' in out.stdout


def test_the_docker_build_context_makes_a_server_wheel_that_serves_the_agent(tmp_path: Path) -> None:
    """`pip install .` in docker/Dockerfile sees only what it COPYs: the package must build from that
    and carry the migrations, the installers and the agent's sources."""
    context = tmp_path / "context"
    context.mkdir()
    # COPY --from=<stage> lines copy a build stage's output (the console's assets, which the
    # node stage's COPY of frontend/ brings in here already built by ./dev), not the context.
    copied = re.findall(r"^COPY (?!--from=)(\S+(?: \S+)*) \S+$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for name in sources.split():
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, context / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"),
                          str(context)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("rts_monitor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("rts_monitor/agent_install.sh", "rts_monitor/agent_src/pyproject.toml",
                     "rts_monitor/agent_src/rts_agent/cli.py", "rts_monitor/installers/agent_wheel.py",
                     "rts_monitor/agent_src/packaging/debian/postinst"):
        assert required in names, required
    assert any(n.startswith("rts_monitor/sql/migrations/") for n in names)
    assert "rts_monitor/console/static/manifest.json" in names  # the console's built assets
    # Installed from that wheel, the packaged sources give the same agent wheel as the checkout.
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from rts_monitor.installers import agent_wheel as a; "
             "print(a.sources()); print(a.wheel().sha256)")
    out = subprocess.run([sys.executable, "-c", probe, str(unpacked)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    where, digest = out.stdout.split()
    assert where == str(unpacked / "rts_monitor" / "agent_src")
    assert digest == agent_wheel.wheel().sha256


@contextlib.contextmanager
def _agent_root() -> Iterator[Path]:
    """A minimal Debian 13 root with what the package depends on, built once per machine (cache
    dir, like the database roots), held under a lock with /proc mounted while a test uses it;
    installing and purging leave it as found."""
    import fcntl

    from rts_monitor.core.settings import default_cache_dir
    from rts_monitor.devtools.localdb import DEBIAN_MIRROR, ensure_debootstrap

    # Named after what it includes: a changed dependency list builds a new root instead of
    # testing the package against a stale one.
    include = "python3,python3-venv,python3-psutil,python3-msgspec,python3-jeepney"
    root = default_cache_dir() / f"debian13-agent-root-{hashlib.sha256(include.encode()).hexdigest()[:8]}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / "agent-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".rts-ready").exists():
            ensure_debootstrap()
            partial = root.with_name(root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(["debootstrap", "--variant=minbase",
                            f"--include={include}",
                            "trixie", str(partial), DEBIAN_MIRROR], check=True, capture_output=True, timeout=900)
            partial.rename(root)
            (root / ".rts-ready").touch()
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        try:
            yield root
        finally:
            subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def _in_root(root: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                           *(f"{k}={v}" for k, v in (env or {}).items()), *argv],
                          capture_output=True, text=True, timeout=300)


def test_the_deb_installs_registers_runs_and_purges_cleanly(api: ApiServer, tmp_path: Path) -> None:
    info = httpx.get(api.url + "/agent/package", timeout=30).json()["deb"]
    assert info["filename"] == f"rts-agent_{_agent_version()}_all.deb"
    data = httpx.get(info["url"].replace(api.settings.effective_public_url, api.url), timeout=30).content
    assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["size"]
    assert subprocess.run(["dpkg-deb", "--info", "/dev/stdin"], input=data, capture_output=True).returncode == 0
    admin = api.headers(api.token("admin"))
    with httpx.Client(base_url=api.url, timeout=30) as client:
        biz = client.post("/api/agents/registration-tokens", headers=admin, json={"business_id": _business(api)})
        assert biz.status_code == 201, biz.text
        token = biz.json()["token"]
    with _agent_root() as root:
        _install_and_purge(api, root, info["filename"], data, token, admin)


def _install_and_purge(api: ApiServer, root: Path, filename: str, data: bytes, token: str,
                       admin: dict[str, str]) -> None:
    pkg = root / "tmp" / filename
    pkg.write_bytes(data)
    try:
        out = _in_root(root, "dpkg", "-i", f"/tmp/{filename}",
                       env={"RTS_AGENT_SERVER": api.url, "RTS_AGENT_TOKEN": token})
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        for path in ("opt/rts-agent/bin/rts-agent", "usr/bin/rts-agent", "lib/systemd/system/rts-agent.service",
                     "var/lib/rts-agent/config.json"):
            assert os.path.lexists(root / path), path  # usr/bin/rts-agent links into the root's /opt
        assert os.readlink(root / "usr/bin/rts-agent") == "/opt/rts-agent/bin/rts-agent"
        assert token not in (root / "var/lib/rts-agent/config.json").read_text()  # spent, never stored
        agent_id = json.loads((root / "var/lib/rts-agent/config.json").read_text())["agent_id"]
        assert httpx.get(f"{api.url}/api/agents/{agent_id}", headers=admin, timeout=30).status_code == 200
        status = _in_root(root, "rts-agent", "--state-dir", "/var/lib/rts-agent", "status", "--json")
        assert status.returncode in (0, 3), status.stdout + status.stderr  # 3: installed, not running here
        assert json.loads(status.stdout)["installed"] is True
        out = _in_root(root, "dpkg", "--purge", "rts-agent")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        for path in ("opt/rts-agent", "usr/bin/rts-agent", "lib/systemd/system/rts-agent.service", "var/lib/rts-agent",
                     "usr/share/rts-agent"):
            assert not os.path.lexists(root / path), f"{path} left behind"
        assert "not installed" in _in_root(root, "dpkg", "-s", "rts-agent").stderr
    finally:
        _in_root(root, "dpkg", "--purge", "rts-agent")
        pkg.unlink(missing_ok=True)


def _business(api: ApiServer) -> str:
    import psycopg

    with psycopg.connect(api.db_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO businesses (business_name) VALUES ('Deb Co') RETURNING id").fetchone()
    assert row is not None
    return str(row[0])
