"""Browser fixtures: Debian's Chromium, driven by Playwright's async API, against the real server.

Playwright's own browser download is not reachable from these machines, so the Debian package is
launched by path (``./dev test`` installs it). Each test gets a fresh browser context (no cookies
shared between tests) whose page fails the test on a script error, a JavaScript dialog (what an
injected ``alert(1)`` would open) or a Content-Security-Policy violation. ``shot`` saves what the
page looks like at desktop and at phone width under ``screenshots/`` (git-ignored): look at them.

Note for writing tests: the pages' CSP forbids eval, so ``page.wait_for_function`` (which evals
its predicate in the page) fails; wait on selectors, or poll ``page.evaluate`` (``until``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, async_playwright

from rts_monitor.auth.principal import Role
from tests.fix_api import ApiServer

CHROMIUM = os.environ.get("RTS_TEST_CHROMIUM", "/usr/bin/chromium")
# What works on these machines (no sandbox as root, no GPU, nothing phoning home).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Console messages that are the page working as intended (a 404 page's own status, a refused
# request a test provokes on purpose), not defects.
EXPECTED_CONSOLE = re.compile(r"status of (401|403|404|422|429)")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: `./dev test` installs Debian's chromium package")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


@dataclass
class ConsoleBrowser:
    """One test's browser: pages against ``api`` with problems collected for the test to fail on."""

    api: ApiServer
    context: BrowserContext
    test_name: str
    problems: list[str] = field(default_factory=list)

    async def page(self) -> Page:
        page = await self.context.new_page()
        page.on("pageerror", lambda exc: self.problems.append(f"script error: {exc}"))
        page.on("console", self._console)
        page.on("dialog", self._dialog)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.search(message.text):
            self.problems.append(f"console error: {message.text}")

    def _dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"a JavaScript dialog opened: {dialog.message!r}")
        asyncio.get_running_loop().create_task(dialog.dismiss())

    def url(self, path: str) -> str:
        return self.api.url + path

    async def sign_in(self, page: Page, role: Role | str, *, business_id: UUID | None = None,
                      user_id: UUID | None = None, next_path: str | None = None) -> None:
        """The portal hand-off: a fresh portal JWT in ``/console/auth``."""
        token = self.api.token(role, business_id=business_id, user_id=user_id)
        query = urlencode({"token": token, **({"next": next_path} if next_path else {})})
        await page.goto(self.url(f"/console/auth?{query}"))

    async def shot(self, page: Page, label: str) -> list[Path]:
        """Screenshots of the page as it is, at desktop and at phone width."""
        SCREENSHOTS.mkdir(exist_ok=True)
        out = []
        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await page.set_viewport_size(size)
            await page.wait_for_timeout(150)  # layout and chart resize settle
            path = SCREENSHOTS / f"{self.test_name}-{label}-{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            out.append(path)
        await page.set_viewport_size(DESKTOP)
        return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember the call's outcome on the item, so ``console`` can keep a picture of a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@contextlib.asynccontextmanager
async def open_console(browser: Browser, api: ApiServer,
                       request: pytest.FixtureRequest) -> AsyncIterator[ConsoleBrowser]:
    """A fresh browser context against ``api`` (the session's server, or one a test started with
    its own settings): a picture of each page when the test failed; the pages' problems fail it."""
    context = await browser.new_context(viewport=DESKTOP, timezone_id="America/New_York", locale="en-US")
    cb = ConsoleBrowser(api, context, request.node.name.removeprefix("test_"))
    yield cb
    if request.node.stash.get(_FAILED, False):
        SCREENSHOTS.mkdir(exist_ok=True)
        for i, page in enumerate(context.pages):
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(SCREENSHOTS / f"{cb.test_name}-FAILED-{i}.png"), full_page=True)
    await context.close()
    assert not cb.problems, "\n".join(cb.problems)


@pytest.fixture
async def console(browser: Browser, api: ApiServer, request: pytest.FixtureRequest) -> AsyncIterator[ConsoleBrowser]:
    async with open_console(browser, api, request) as cb:
        yield cb


async def until(check: Callable[[], Awaitable[Any]], *, seconds: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (its value), or fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.1)
