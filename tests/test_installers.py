"""The agent wheel the server serves (``GET /agent/package``, ``GET /agent/{wheel}``), and the server
package built from exactly what the Docker image copies (it must carry the agent's sources)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shutil
import subprocess
import sys
import zipfile
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
    assert f"Version: {version}" in metadata and "Requires-Dist: aiohttp" in metadata
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
    copied = re.findall(r"^COPY (\S+(?: \S+)*) \S+$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
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
                     "rts_monitor/agent_src/rts_agent/cli.py", "rts_monitor/installers/agent_wheel.py"):
        assert required in names, required
    assert any(n.startswith("rts_monitor/sql/migrations/") for n in names)
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
