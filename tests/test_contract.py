"""The OpenAPI document is the contract: schemathesis drives every operation of a live server with
generated requests (valid and invalid) as an admin and as an agent, and fails on any 5xx and on
any answer the document does not describe (status, content type, headers, body schema).

Every check runs except ``positive_data_acceptance``: a request the schema allows may still break
a rule that JSON Schema cannot state (a location of another business, an interpreter outside
RTS_COMMAND_SCRIPT_INTERPRETERS, a time outside its window); that is a documented 422, not a
violation. Destructive operations on the agent (delete, revoke) get an agent of their own, so the
others keep a working identity for the whole run.

The run is deterministic (a fixed seed); RTS_SCHEMATHESIS_SEED and RTS_SCHEMATHESIS_EXAMPLES
explore further.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import factories
from tests.fix_api import ApiServer

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def _config(admin: str, agent: factories.Agent, victim: factories.Agent) -> str:
    destructive = ("DELETE /api/agents/{agent_id}", "POST /api/agents/{agent_id}/token/revoke")
    ops = "".join(f'\n[[operations]]\ninclude-name = "{name}"\nparameters = {{ agent_id = "{victim.id}" }}\n'
                  for name in destructive)
    return (f'[auth.openapi.portal]\nbearer = "{admin}"\n'
            f'[auth.openapi.agent]\nbearer = "{agent.token}"\n'
            f'[parameters]\nagent_id = "{agent.id}"\n{ops}')


async def test_every_operation_keeps_to_the_document(api_factory: Callable[..., ApiServer], conn: Any,
                                                     tmp_path: Path) -> None:
    # Fuzzing on a busy 2-core box can hold every pooled connection for a moment; the document's
    # 503 for that is what the fail-fast wait (1 s) answers, and schemathesis counts any 5xx as a
    # failure. The wait is drilled in test_outage; here a longer one keeps the run about the document.
    server = api_factory(env={"RTS_DB_ACQUIRE_TIMEOUT_SECONDS": "15"})
    tenant = await factories.tenant(conn)
    victim = await factories.agent(conn, tenant.business_id, tenant.location_id)
    admin = server.token("admin", user_id=await factories.user(conn, None, "admin"))
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(admin, tenant.agent, victim))
    seed = os.environ.get("RTS_SCHEMATHESIS_SEED", "1")
    examples = os.environ.get("RTS_SCHEMATHESIS_EXAMPLES", "15")
    started = time.monotonic()
    run = await asyncio.to_thread(
        subprocess.run,
        [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{server.url}/schema/openapi.json",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", examples, "--seed", seed, "--workers", "2", "--request-timeout", "20",
         "--generation-database", "none", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    out = run.stdout + run.stderr
    summary = out[out.find("SUMMARY"):] if "SUMMARY" in out else out[-3000:]
    print(f"\nschemathesis: {time.monotonic() - started:.0f} s\n{summary}")
    assert run.returncode == 0, out[-12000:]
    assert "Tested: " in out and "Selected: " in out
    log = server.log_path.read_text(errors="replace")
    assert "request.failed" not in log and "Traceback" not in log, server.log_tail(80)


async def test_the_document_names_every_status_and_content_type(client: Any) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    ops = {(method.upper(), path): op for path, item in schema["paths"].items()
           for method, op in item.items() if isinstance(op, dict)}
    for (method, path), op in ops.items():
        retry = op["responses"]["503"]["headers"]["Retry-After"]
        assert retry["required"] is True, (method, path)
    conflicts = [("POST", "/api/alerts/{alert_id}/acknowledge"), ("POST", "/api/alerts/{alert_id}/resolve"),
                 ("POST", "/api/agents/{agent_id}/commands/{command_id}/approve"),
                 ("POST", "/api/agents/{agent_id}/commands/{command_id}/reject"),
                 ("POST", "/api/agents/{agent_id}/commands/{command_id}/cancel"),
                 ("POST", "/api/agents/{agent_id}/commands/{command_id}/result"),
                 ("PUT", "/api/admin/tiers/compression")]
    assert all("409" in ops[op]["responses"] for op in conflicts)
    assert "401" in ops[("POST", "/api/agents/register")]["responses"]
    for op in (("GET", "/api/agents"), ("GET", "/api/commands"), ("GET", "/api/fleet/metrics/history")):
        assert "404" in ops[op]["responses"], op  # an unknown filter id
    content = {path: list(ops[("GET", path)]["responses"]["200"]["content"])
               for path in ("/install.sh", "/install.ps1", "/agent/{filename}")}
    assert content == {"/install.sh": ["text/x-shellscript"], "/install.ps1": ["text/plain"],
                       "/agent/{filename}": ["application/octet-stream", "application/vnd.debian.binary-package"]}
    commands = ops[("GET", "/api/agents/{agent_id}/commands")]["responses"]["200"]["content"]["application/json"]
    assert "anyOf" in commands["schema"] and "oneOf" not in commands["schema"]  # {"commands": []} fits both
    assert schema["components"]["schemas"]["RuleCreate"]["additionalProperties"] is False
    resp = await client.get("/install.sh")
    assert resp.headers["content-type"] == "text/x-shellscript; charset=utf-8"
