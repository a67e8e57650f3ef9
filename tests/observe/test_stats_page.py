"""The stats page in a real browser: Debian's headless chromium, driven by selenium.

The page is opened once (with the Basic credentials in the URL, as a user
types them); a backend then goes down (its process stops, the health checks
mark it DOWN) and the page shows it without being reloaded: a marker set in
the window before is still there. A screenshot goes to
``test-artifacts/stats-page.png`` in the work tree (not committed; the docs'
picture is one of these).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

import pylb
from pylb.core.health import HealthCheck
from pylb.core.models import Snapshot
from pylb.testing import open_hello

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "stats-page.png"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


def _browser(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # Debian's package: never a browser downloaded
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 20.0) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} not seen within {timeout:g} s; the page:\n{driver.page_source[:3000]}") from None


def _row_state(driver: Any, address: str) -> str | None:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f'#backends tr[data-backend="{address}"]')
    return rows[0].get_attribute("class") if rows else None


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)) and os.environ.get("CI") != "true",
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)
async def test_the_page_shows_a_backend_going_down_without_a_reload() -> None:
    check = HealthCheck(inter=0.1, fall=1, rise=1)
    async with AsyncExitStack() as stack:
        outer = await stack.enter_async_context(trio.open_nursery())
        web1 = await stack.enter_async_context(open_hello("web1"))
        going = trio.CancelScope()
        web2 = await outer.start(_hello_until, "web2", going)
        lb = await stack.enter_async_context(
            pylb.open_balancer(stats="127.0.0.1:0", stats_auth=("admin", "s3cret"), health=check)
        )
        backends = (web1.backend, web2.backend)
        names = ((str(web1.backend), "web1"), (str(web2.backend), "web2"))
        lb.swap(dataclasses.replace(Snapshot.of_backends(backends), names=names))
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(_get, f"{lb.url}/{i}")
        profile = tempfile.mkdtemp(prefix="pylb-chromium-")
        driver = await trio.to_thread.run_sync(_browser, profile)
        try:
            url = lb.stats_url.replace("http://", "http://admin:s3cret@") + "/"
            await trio.to_thread.run_sync(driver.get, url)
            both_up = lambda d: _row_state(d, str(web1.backend)) == "up" and _row_state(d, str(web2.backend)) == "up"  # noqa: E731
            await trio.to_thread.run_sync(_wait, driver, both_up, "both backends up")
            await trio.to_thread.run_sync(driver.execute_script, "window.pylbMarker = 'same page';")
            going.cancel()  # web2 stops: its next check fails, and it is DOWN
            down = lambda d: _row_state(d, str(web2.backend)) == "down"  # noqa: E731
            await trio.to_thread.run_sync(_wait, driver, down, "web2 down")
            assert await trio.to_thread.run_sync(driver.execute_script, "return window.pylbMarker;") == "same page"
            text = await trio.to_thread.run_sync(lambda: driver.find_element("id", "events").text)
            assert "web2" in text and "DOWN" in text  # the health event, naming the container
            assert _row_state(driver, str(web1.backend)) == "up"
            SHOT.parent.mkdir(exist_ok=True)
            assert await trio.to_thread.run_sync(driver.save_screenshot, str(SHOT))
            assert SHOT.stat().st_size > 10_000
        finally:
            await trio.to_thread.run_sync(driver.quit)
            shutil.rmtree(profile, ignore_errors=True)


async def _hello_until(name: str, scope: trio.CancelScope, *, task_status: trio.TaskStatus[Any]) -> None:
    """A hello backend that runs until ``scope`` is cancelled."""
    with scope:
        async with open_hello(name) as backend:
            task_status.started(backend)
            await trio.sleep_forever()


async def _get(url: str) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 200
