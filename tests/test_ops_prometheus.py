"""ops/prometheus and ops/grafana, proven with the real tools: promtool checks and unit-tests the files, and
a real Prometheus, loaded with the shipped config and rules, scrapes a live server carrying traffic and
answers every expression of the alert rules and of the dashboard."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .http_support import EventStreamClient
from .support import RawClient, ServerProcess, clients, http, login, metric, scrape, wait_until

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
DASHBOARD = ROOT / "ops" / "grafana" / "tornado-chat.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# Grafana's variables, as the dashboard's "All" instance and a rate window that covers the whole test.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".+"}
# Dashboard expressions that may rightly return no data for the traffic of this test, and why.
MAY_BE_EMPTY: dict[str, str] = {}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel."""
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


def with_grafana_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr}"
    return expr


# ---------------------------------------------------------------- promtool


def test_promtool_checks_the_config_and_the_rules() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert_firing_and_quiet() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
            for alert in case["exp_alerts"]:
                # Every firing case states the annotations it expects, so templates are checked too.
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, test["name"]
    names = {rule["alert"] for rule in alert_rules()}
    assert names == fires, f"alerts never shown firing: {names - fires}"
    assert names == quiet, f"alerts never shown staying quiet: {names - quiet}"


def test_the_required_alerts_exist_with_annotations_and_a_runbook_in_operations_md() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    required = {
        "ChatInstanceDown",
        "ChatHeartbeatStalled",
        "ChatHighReapRate",
        "ChatEventLoopLagHigh",
        "ChatSlowConsumers",
        "ChatHighErrorRate",
        "ChatStoreCommitSlow",
        "ChatConnectionsNearLimit",
    }
    assert required <= set(rules)
    for name, rule in rules.items():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == (
            "https://github.com/tornado-chat/tornado-chat/blob/main/docs/operations.md#" + name.lower()
        )
        assert rule["labels"]["severity"] in ("critical", "warning"), name


# ---------------------------------------------------------------- a real Prometheus


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        status, _, body = http("GET", f"{self.url}api/v1/{path}" + (f"?{query}" if query else ""))
        assert isinstance(body, dict), (status, body)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, or None while Prometheus cannot answer or has no sample."""
        try:
            status, _, body = http("GET", f"{self.url}api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        except OSError:
            return None
        if status != 200 or not isinstance(body, dict):
            return None  # still starting (503)
        result = body.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if body.get("status") == "success" and len(result) == 1 else None


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The real command, with the durable store and a fast heartbeat so that a dead peer is reaped in ~1 s."""
    server = ServerProcess(
        "--data-dir", str(tmp_path / "data"), "--ping-interval", "0.5", "--ping-timeout", "0.5",
        "--heartbeat-tick", "0.1",
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prometheus(live_server: ServerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus with ops/prometheus/prometheus.yml: its rules, its job; only the target and intervals changed."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "tornado-chat"
    job["static_configs"] = [{"targets": [f"127.0.0.1:{live_server.ops_port}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Prometheus(port)
    finally:
        process.terminate()
        process.wait(10)


def generate_traffic(server: ServerProcess) -> None:
    """Something for every panel: joins, room and direct messages, a bad frame, a refused handshake,
    a client that closes and one that goes silent and is reaped, and a client on the event stream."""
    before = scrape(server.ops_url)
    with clients(server.base_url, "alice", "bob", "carol") as (alice, bob, carol):
        for client in (alice, bob, carol):
            client.join("ops")
        stream = EventStreamClient(server.base_url, "frank", login(server.base_url, "frank"))
        stream.join("ops")
        alice.send_message("to the stream too", room="ops")
        stream.expect("message", text="to the stream too")
        stream.close()
        for i in range(10):
            alice.send_message(f"room {i}", room="ops")
        bob.send_message("just for alice", to="alice")
        bob.send("{not json")
        bob.expect("error", code="bad_json")
        status, _, _ = http("GET", server.base_url + "ws")  # no token, no upgrade
        assert status in (400, 401)
        silent = RawClient(server.port, login(server.base_url, "silent"))
        try:
            silent.send_frame(b'{"type": "join", "room": "ops"}')
            alice.expect("member", user="silent", event="joined")
            alice.expect("presence", user="silent", status="offline")  # reaped
        finally:
            silent.close()
        # Live clients answer pings: round trips are measured.
        wait_until(
            lambda: metric(scrape(server.ops_url), "chat_heartbeat_pongs_total") >= 3,
            "pongs from the live clients",
        )
    wait_until(
        lambda: metric(scrape(server.ops_url), "chat_connections_closed_total", reason="client", transport="sse") == 1,
        "the event stream to be counted closed",
    )
    after = scrape(server.ops_url)
    assert metric(after, "chat_heartbeat_reaped_total") - metric(before, "chat_heartbeat_reaped_total") == 1
    # Alice and Bob stay for the rest of the test with a new connection each.


def test_every_alert_and_dashboard_expression_runs_on_a_real_prometheus(
    live_server: ServerProcess, prometheus: Prometheus
) -> None:
    # The first scrape lands about 5 s after Prometheus starts; traffic after it makes every rate move.
    wait_until(lambda: prometheus.value('up{job="tornado-chat"}') == 1, "the first scrape", timeout=30)
    with clients(live_server.base_url, "dave", "erin") as (dave, erin):
        dave.join("lobby")
        erin.join("lobby")
        generate_traffic(live_server)
        target = metric(scrape(live_server.ops_url), "chat_messages_total", kind="room")
        # A scrape has seen all of it (the reap included), and an earlier one saw none of it.
        wait_until(
            lambda: (
                (prometheus.value('chat_messages_total{kind="room"}') or 0) >= target
                and (prometheus.value("chat_heartbeat_reaped_total") or 0) >= 1
            ),
            "a scrape after the traffic",
            timeout=15,
        )

        # The shipped rules are loaded from their file and every one evaluates without error.
        def rules_evaluated() -> bool:
            groups = prometheus.api("rules")["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return len(rules) == len(alert_rules()) and all(
                rule["health"] == "ok" and rule["lastEvaluation"] > "2000" for rule in rules
            )

        wait_until(rules_evaluated, "every alert rule to be evaluated", timeout=15)
        groups = prometheus.api("rules")["data"]["groups"]
        assert {rule["name"] for g in groups for rule in g["rules"]} == {r["alert"] for r in alert_rules()}
        assert all(Path(g["file"]) == PROMETHEUS_DIR / "alerts.yml" for g in groups)

        # Every alert expression parses and runs; with a healthy server none of them fires.
        for rule in alert_rules():
            body = prometheus.query(rule["expr"])
            assert body["status"] == "success", (rule["alert"], body)
            assert body["data"]["result"] == [], (rule["alert"], body["data"]["result"])
        assert prometheus.query("ALERTS")["data"]["result"] == []

        # Every dashboard query parses and has data: at least one series with a number.
        empty = []
        for title, expr in dashboard_expressions():
            body = prometheus.query(with_grafana_variables(expr))
            assert body["status"] == "success", (title, expr, body)
            values = [float(series["value"][1]) for series in body["data"]["result"]]
            if not any(math.isfinite(v) for v in values) and expr not in MAY_BE_EMPTY:
                empty.append((title, expr, values))
        assert empty == [], empty

        # The dashboard's instance variable: label_values(chat_build_info, instance).
        instances = prometheus.api("label/instance/values", **{"match[]": "chat_build_info"})["data"]
        assert instances == [f"127.0.0.1:{live_server.ops_port}"]
        dave.barrier()
        erin.barrier()


def test_a_broken_expression_is_refused_by_the_same_api(prometheus: Prometheus) -> None:
    # The check above has teeth: Prometheus answers a parse error with status "error", not an empty result.
    wait_until(lambda: prometheus.value("vector(1)") == 1, "Prometheus to answer", timeout=15)
    body = prometheus.query("sum(rate(chat_messages_total[5m])")
    assert body["status"] == "error" and body["errorType"] == "bad_data"


# ---------------------------------------------------------------- the dashboard file


def test_the_dashboard_is_an_importable_grafana_10_dashboard() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 38 and board["uid"] and board["title"] == "tornado-chat"
    assert board.get("id") is None  # Grafana assigns its own id on import
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["datasource"]["uid"] == "${datasource}"
    assert instance["definition"] == "label_values(chat_build_info, instance)"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            # Every chat_ metric is filtered by the instance variable, so the selector means something.
            for selector in re.findall(r"\b(chat_[a-z_]+|up|process_[a-z_]+)\{([^}]*)\}", target["expr"]):
                assert 'instance=~"$instance"' in selector[1], (panel["title"], target["expr"])
    titles = " | ".join(panel["title"].lower() for panel in board["panels"])
    for wanted in (
        "connections",
        "users online",
        "messages and deliveries",
        "fan-out latency",
        "heartbeat round trip",
        "reaped",
        "detection time",
        "event loop lag",
        "store commit latency",
        "batch size",
        "errors by code",
        "closes by reason",
    ):
        assert wanted in titles, wanted
