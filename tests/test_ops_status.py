"""The status page of the ops listener: the pure builder with a fake clock, the live page in Chromium with
deliberately slow connections, and the page served by a non-editable install of the package."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
import tornado
from playwright.sync_api import Browser, expect

from tornado_chat.memory_store import MemoryStore
from tornado_chat.status import CONTENT_SECURITY_POLICY, Sample, SampleRing, build_status, rates

from .conftest import make_settings
from .support import SECRET, WAIT_S, RawClient, ServerProcess, ServerThread, clients, http, login

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_MS = 10_000
COUNTS = {
    "chat_connections": 3,
    "chat_users_online": 2,
    "chat_rooms": 4,
    "chat_heartbeat_monitored": 3,
    "chat_store_queue_depth": 0,
    "chat_connections_max": 20000,
}


def fake_session(
    user: str, *, opened_at: float, last_seen: float, rtt: float | None = None, buffered: int = 0, rooms: int = 1
) -> Any:
    """The attributes of a ``session.Session`` that the status page reads, on plain objects."""
    account = SimpleNamespace(name=user, rooms={f"room{i}" for i in range(rooms)})
    return SimpleNamespace(
        user=account,
        peer=SimpleNamespace(last_seen=last_seen, rtt_s=rtt),
        transport=SimpleNamespace(remote_ip="192.0.2.7", buffered_bytes=buffered // 2),
        held_bytes=buffered - buffered // 2,
        opened_at=opened_at,
    )


@pytest.mark.unit
def test_build_status_reports_counts_ages_and_the_top_connections_by_each_measure() -> None:
    now = 1000.0
    sessions = [
        fake_session("fresh", opened_at=990.0, last_seen=999.5, rtt=0.002, buffered=0, rooms=2),
        fake_session("laggy", opened_at=400.0, last_seen=998.0, rtt=0.350, buffered=10),
        fake_session("backed-up", opened_at=900.0, last_seen=997.0, rtt=None, buffered=5_000_000),
        fake_session("silent", opened_at=100.0, last_seen=970.0, rtt=0.010, buffered=20, rooms=0),
    ]
    status = build_status(now=now, counts=COUNTS, sessions=sessions, samples=[], uptime_s=1234.56, state="ready", top=3)
    assert status["counts"] == {
        "connections": 3,
        "users_online": 2,
        "rooms": 4,
        "heartbeat_monitored": 3,
        "store_queue_depth": 0,
        "connections_max": 20000,
    }
    assert status["state"] == "ready" and status["uptime_s"] == 1234.6 and status["top"] == 3
    tables = status["tables"]
    assert [row["user"] for row in tables["buffered"]] == ["backed-up", "silent", "laggy"]
    assert [row["user"] for row in tables["silence"]] == ["silent", "backed-up", "laggy"]
    # A connection that never answered a ping has no round trip and is left out of that table.
    assert [row["user"] for row in tables["rtt"]] == ["laggy", "silent", "fresh"]
    silent = tables["silence"][0]
    assert silent == {
        "user": "silent",
        "address": "192.0.2.7",
        "age_s": 900.0,  # opened_at is monotonic: now - opened_at
        "rooms": 0,
        "rtt_s": 0.01,
        "silent_s": 30.0,  # seconds since the last sign of life
        "buffered": 20,
    }
    assert tables["rtt"][2]["rooms"] == 2 and tables["rtt"][2]["age_s"] == 10.0


@pytest.mark.unit
def test_the_clock_moves_ages_and_silences_and_nothing_else() -> None:
    session = fake_session("alice", opened_at=50.0, last_seen=60.0)
    first = build_status(now=100.0, counts=COUNTS, sessions=[session], samples=[], uptime_s=0, state="ready")
    later = build_status(now=160.0, counts=COUNTS, sessions=[session], samples=[], uptime_s=0, state="ready")
    assert (first["tables"]["silence"][0]["silent_s"], later["tables"]["silence"][0]["silent_s"]) == (40.0, 100.0)
    assert (first["tables"]["silence"][0]["age_s"], later["tables"]["silence"][0]["age_s"]) == (50.0, 110.0)


@pytest.mark.unit
def test_rates_come_from_the_samples_of_the_last_few_seconds() -> None:
    ring = SampleRing(size=32, min_gap_s=0.5)
    # A page polling every 2 s: 10 messages and 30 deliveries a second.
    for step in range(10):
        at = 100.0 + 2 * step
        ring.add(Sample(at, 10 * (at - 100), 30 * (at - 100)))
    ring.add(Sample(118.2, 182.0, 546.0))  # a second viewer 0.2 s later: not kept
    assert len(ring.samples) == 10
    result = rates(ring.samples, now=118.0, window_s=10.0)
    assert result == {"messages_per_s": 10.0, "deliveries_per_s": 30.0, "window_s": 10.0}


@pytest.mark.unit
def test_rates_are_unknown_until_there_are_two_samples_close_enough() -> None:
    assert rates([], now=5.0)["messages_per_s"] is None
    assert rates([Sample(5.0, 1, 1)], now=5.0)["window_s"] is None
    # Nobody looked for ten minutes: the first poll after that says nothing rather than a ten-minute average.
    stale = [Sample(0.0, 0, 0), Sample(600.0, 6000, 6000)]
    assert rates(stale, now=600.0)["messages_per_s"] is None
    # The next poll, 2 s later, has a rate again.
    assert rates([*stale, Sample(602.0, 6010, 6040)], now=602.0) == {
        "messages_per_s": 5.0,
        "deliveries_per_s": 20.0,
        "window_s": 2.0,
    }


@pytest.mark.unit
def test_ten_thousand_sessions_are_ranked_building_only_the_rows_shown() -> None:
    """Three O(n log 20) passes, and a row (the costly part) built only for the 20 shown per table."""
    rows_built = 0

    class CountingTransport:
        def __init__(self, buffered: int) -> None:
            self.buffered_bytes = buffered

        @property
        def remote_ip(self) -> str:
            nonlocal rows_built
            rows_built += 1  # read once per row built, and nowhere else
            return "192.0.2.7"

    sessions = []
    for i in range(10_000):
        session = fake_session(
            f"user{i}",
            opened_at=float(i % 500),
            last_seen=1000.0 - (i * 7919) % 10_000 / 100,
            rtt=(i * 31) % 997 / 1e4,
            buffered=(i * 104_729) % 65_536,
        )
        session.transport = CountingTransport(session.transport.buffered_bytes)
        sessions.append(session)
    status = build_status(now=1000.0, counts=COUNTS, sessions=sessions, samples=[], uptime_s=1.0, state="ready")
    for table, key in (("buffered", "buffered"), ("silence", "silent_s"), ("rtt", "rtt_s")):
        rows = status["tables"][table]
        assert len(rows) == 20
        values = [row[key] for row in rows]
        assert values == sorted(values, reverse=True)
    biggest = max(s.transport.buffered_bytes + s.held_bytes for s in sessions)
    assert status["tables"]["buffered"][0]["buffered"] == biggest
    assert rows_built == 3 * 20


# ---------------------------------------------------------------- the live page


def flood_until_buffered(server: ServerThread, slow_name: str) -> None:
    """Send large room messages until the server holds unsent bytes for ``slow_name``'s connection."""

    def slow_buffered() -> int:
        for session in server.chat.hub.sessions.values():
            if session.user.name == slow_name:
                return session.transport.buffered_bytes
        return 0

    text = "x" * 60_000
    deadline = time.monotonic() + WAIT_S
    with clients(server.base_url, "flooder") as (flooder,):
        flooder.join("flood")
        while server.call(slow_buffered) < 1_000_000:
            assert time.monotonic() < deadline, "the server never buffered anything for the slow reader"
            for _ in range(20):
                flooder.send({"type": "send", "id": flooder.new_id(), "room": "flood", "text": text})
            flooder.barrier()


@pytest.mark.system
def test_the_page_lists_a_reader_that_stopped_reading_first(browser: Browser, tmp_path: Path) -> None:
    # The flood must outrun the rate limit, and the slow reader must stay under the slow-consumer cap.
    settings = make_settings(
        tmp_path,
        max_text_chars=60_000,
        max_message_bytes=1 << 20,
        ping_interval_s=1.0,
        ping_timeout_s=60.0,
        rate_limit_per_s=100_000,
        rate_limit_burst=100_000,
        max_buffered_bytes=16 << 20,
    )
    server = ServerThread(settings, store=MemoryStore()).start()
    context = browser.new_context()
    try:
        with clients(server.base_url, "early") as (early,):
            early.join("flood")
            # "slow" joins, then neither reads nor answers pings again.
            slow = RawClient(server.port, login(server.base_url, "slow"))
            try:
                slow.send_frame(b'{"type": "join", "room": "flood"}')
                early.expect("member", user="slow", event="joined")
                flood_until_buffered(server, "slow")
                early.barrier()  # a sign of life from "early", after the last one from "slow"

                status, headers, body = http("GET", server.ops_url + "status")
                assert status == 200 and headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert "<script>" not in body.decode() and 'src="status.js"' in body.decode()

                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(server.ops_url + "status")
                buffered_first = page.locator("#table-buffered tbody tr").first
                expect(buffered_first).to_contain_text("slow", timeout=TIMEOUT_MS)
                expect(buffered_first).to_contain_text("MiB")
                expect(buffered_first.locator("td").nth(1)).to_have_text("127.0.0.1")
                expect(buffered_first.locator("td").nth(3)).to_have_text("1")  # one room
                expect(page.locator("#table-silence tbody tr").first).to_contain_text("slow")
                # "early" answers pings, so it has a round trip; "slow" never has one.
                expect(page.locator("#table-rtt tbody")).to_contain_text("early", timeout=TIMEOUT_MS)
                expect(page.locator("#table-rtt tbody")).not_to_contain_text("slow")
                expect(page.locator("#connections")).to_have_text("2 / 20000")
                expect(page.locator("#users_online")).to_have_text("2")
                # The page keeps refreshing itself: a third user shows up without a reload.
                with clients(server.base_url, "late"):
                    expect(page.locator("#connections")).to_have_text("3 / 20000", timeout=TIMEOUT_MS)
                    expect(page.locator("#table-silence tbody")).to_contain_text("late")
                assert problems == [], problems  # no CSP violation, no script error
            finally:
                slow.close()
    finally:
        context.close()
        server.stop()


@pytest.mark.integration
def test_status_json_counts_messages_per_second(server: ServerThread) -> None:
    status, _, first = http("GET", server.ops_url + "status.json")
    assert status == 200 and first["counts"]["connections"] == 0
    with clients(server.base_url, "alice", "bob") as (alice, bob):
        alice.join("rate")
        bob.join("rate")
        for i in range(5):
            alice.send_message(f"m{i}", room="rate")
        bob.expect("message", text="m4")
        _, _, body = http("GET", server.ops_url + "status.json")
    rate_info = body["rates"]
    # Five messages and five deliveries since the first sample: positive rates over a known span.
    assert rate_info["window_s"] > 0
    assert rate_info["messages_per_s"] == pytest.approx(5 / rate_info["window_s"], rel=0.01)
    assert rate_info["deliveries_per_s"] == pytest.approx(5 / rate_info["window_s"], rel=0.01)
    assert body["counts"]["users_online"] == 2 and body["counts"]["rooms"] == 1


# ---------------------------------------------------------------- installed, not editable


class InstalledServer(ServerProcess):
    """``python -m tornado_chat`` run by another interpreter, from another directory."""

    def __init__(self, python: Path, cwd: Path, env: dict[str, str], *args: str) -> None:
        super().__init__(*args)
        self.python = python
        self.cwd = cwd
        self.env = env

    def start(self) -> InstalledServer:
        self.proc = subprocess.Popen(
            [str(self.python), "-m", "tornado_chat", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        threading.Thread(target=self._read, daemon=True).start()
        match = self.LISTENING.search(self.wait_for_line(self.LISTENING, timeout=30))
        assert match is not None
        self.port, self.ops_port = int(match.group(1)), int(match.group(2))
        return self


@pytest.mark.integration
def test_the_page_is_served_by_a_non_editable_install(tmp_path: Path) -> None:
    if int(importlib.metadata.version("setuptools").split(".")[0]) < 68 or importlib.util.find_spec("wheel") is None:
        message = "building the package offline needs the test extras (setuptools>=68, wheel): pip install '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # A copy of what a source distribution holds, so that nothing is built inside the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("tornado_chat", "static"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         # --ignore-installed: without it pip removes this checkout's own (editable) install before it
         # installs into the prefix.
         "--ignore-installed", "--prefix", str(venv), str(source)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # The dependencies come from this environment, by plain path (its .pth hooks, such as an editable
    # install of this checkout, are not run).
    dependencies = {str(Path(m.__file__).resolve().parent.parent) for m in (tornado, prometheus_client)}  # type: ignore[arg-type]
    (site_packages / "deps.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    python = venv / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import tornado_chat; print(tornado_chat.__file__)"],
        capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site_packages), where.stdout + where.stderr

    server = InstalledServer(
        python, tmp_path, env, "--store", "memory", "--data-dir", str(tmp_path / "data"), "--secret", SECRET.decode()
    ).start()
    try:
        for path, name in (("status", "status.html"), ("status.js", "status.js"), ("status.css", "status.css")):
            status, headers, body = http("GET", server.ops_url + path)
            assert status == 200, (path, body)
            assert body == (ROOT / "tornado_chat" / "ops_status" / name).read_bytes()
            assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        status, _, body = http("GET", server.ops_url + "status.json")
        assert status == 200 and body["state"] == "ready"
        status, _, page = http("GET", server.base_url)
        assert status == 200 and re.search(rb"<title>tornado-chat</title>", page)
    finally:
        server.stop()
