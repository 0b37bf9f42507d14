"""Shared fixtures: a real chat server on an ephemeral loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tornado_chat.settings import Settings

from .support import ServerThread

TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier (setup.cfg lists them); a new test without one fails here."""
    for item in items:
        tiers = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: mark it with exactly one of {', '.join(TIERS)} (has {tiers})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (``CI`` set, as ``.ci/run`` does) a test that skips for want of a tool fails instead."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every tool must be there: {report.longrepr}"


def make_settings(tmp_path: Path, **changes: object) -> Settings:
    """Test settings: loopback, ephemeral port, a fresh data directory."""
    base = Settings(address="127.0.0.1", port=0, ops_port=0, data_dir=tmp_path / "data")
    return base.replace(**changes)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(make_settings(tmp_path)).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def base_url(server: ServerThread) -> str:
    return server.base_url


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # One raster thread, whole tiles: the same page gives the same pixels every time (docs/screenshot.png
    # is only rewritten when it really changes).
    "--num-raster-threads=1",
    "--disable-partial-raster",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium driven by Playwright (browsers cannot be downloaded here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package chromium (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
