"""The command executor: allow-list, no shell path, timeouts that kill the tree, capped output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rts_agent.commands import CANCELLED, Command, Executor


def cmd(command_type: str, timeout: float = 10, **params: object) -> Command:
    return Command.from_message({"command_id": "c1", "command_type": command_type, "params": params,
                                 "timeout_seconds": timeout})


async def test_unknown_types_are_refused_without_running_anything() -> None:
    result = await Executor().execute(cmd("format_disk", device="/dev/sda"))
    assert result.status == "failed" and result.exit_code is None
    assert result.error_message is not None and "not allowed" in result.error_message
    assert result.started_at and result.completed_at


async def test_run_script_has_no_shell_injection_path(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"x; touch {marker}; $(touch {marker}) `touch {marker}`"
    result = await Executor().execute(cmd("run_script", script='printf "%s\\n" "$@"', interpreter="sh",
                                          arguments=[hostile, "two words"]))
    assert result.status == "completed", result
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [hostile, "two words"]  # arguments arrive verbatim
    assert not marker.exists()


async def test_run_script_reports_exit_code_stderr_and_working_directory(tmp_path: Path) -> None:
    result = await Executor().execute(cmd("run_script", interpreter="python3", working_directory=str(tmp_path),
                                          script="import os, sys\nprint(os.getcwd())\n"
                                                 "print('bad', file=sys.stderr)\nsys.exit(3)"))
    assert result.status == "failed" and result.exit_code == 3
    assert result.stdout.strip() == str(tmp_path) and result.stderr.strip() == "bad"


async def test_bad_parameters_are_rejected() -> None:
    ex = Executor()
    for params in ({"script": "true", "interpreter": "zsh -c"}, {"interpreter": "sh"},
                   {"script": "true", "arguments": "not a list"}):
        result = await ex.execute(cmd("run_script", **params))
        assert result.status == "failed" and "rejected by agent" in (result.error_message or ""), params
    result = await ex.execute(cmd("restart_service", service_name="nginx; reboot"))
    assert result.status == "failed" and "service_name" in (result.error_message or "")
    result = await ex.execute(cmd("restart_service", service_name="--force"))
    assert result.status == "failed" and "service_name" in (result.error_message or "")


async def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    script = f"(sleep 3; touch {marker}) &\nsleep 30\n"
    started = time.monotonic()
    result = await Executor().execute(cmd("run_script", timeout=1, script=script, interpreter="sh"))
    assert result.status == "timeout"
    assert time.monotonic() - started < 10
    await asyncio.sleep(3.5)
    assert not marker.exists(), "a child of the timed-out script kept running"


async def test_cancel_kills_the_whole_process_tree_and_says_so(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    script = f"(sleep 3; touch {marker}) &\necho started\nsleep 30\n"
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, cancel.set)
    started = time.monotonic()
    result = await Executor().execute(cmd("run_script", timeout=60, script=script, interpreter="sh"), cancel)
    assert result.status == "failed" and result.error_message == CANCELLED
    assert time.monotonic() - started < 5
    await asyncio.sleep(3.5)
    assert not marker.exists(), "a child of the cancelled script kept running"


async def test_a_command_that_ends_first_is_not_cancelled_and_update_is_uninterruptible() -> None:
    cancel = asyncio.Event()
    result = await Executor().execute(cmd("ping"), cancel)
    assert result.status == "completed" and not cancel.is_set()

    async def slow_update(_: Command) -> str:
        await asyncio.sleep(0.5)
        return "updated"

    cancel.set()  # already cancelled: an update, once started, still runs to its end
    result = await Executor(hooks={"update_agent": slow_update}).execute(cmd("update_agent"), cancel)
    assert (result.status, result.stdout) == ("completed", "updated")


async def test_output_is_capped_and_the_child_is_not_blocked() -> None:
    ex = Executor(output_cap=1000)
    result = await ex.execute(cmd("run_script", interpreter="python3",
                                  script="import sys\nsys.stdout.write('a' * 5_000_000)\nsys.stderr.write('e' * 10)"))
    assert result.status == "completed"
    assert result.stdout.startswith("a" * 1000) and "[output truncated: 4999000 more bytes]" in result.stdout
    assert result.stdout_truncated and not result.stderr_truncated and result.stderr == "e" * 10


async def test_ping_and_hooks() -> None:
    async def hook(_: Command) -> str:
        return "inventory sent"

    ex = Executor(hooks={"collect_inventory": hook})
    assert (await ex.execute(cmd("ping"))).stdout == "pong"
    result = await ex.execute(cmd("collect_inventory"))
    assert (result.status, result.stdout) == ("completed", "inventory sent")
    assert "collect_inventory" in ex.allowed and "run_script" in ex.allowed


def test_command_from_either_message_shape() -> None:
    ws = Command.from_message({"type": "command", "command_id": "a", "command_type": "ping", "params": {},
                               "timeout_seconds": 5})
    legacy = Command.from_message({"id": "b", "command_type": "ping", "command_params": {"x": 1}})
    assert (ws.command_id, ws.timeout_seconds) == ("a", 5)
    assert (legacy.command_id, legacy.params, legacy.timeout_seconds) == ("b", {"x": 1}, 300)
