"""The benchmark tool end to end at tiny sizes, against tornado-chat and the plain-Tornado peers.

One run of ``python -m bench`` (a few seconds) feeds most checks below: the JSON is complete, the counts
add up (every message reached every member exactly once, every send was acked), and the figures are
sane. A second, shorter run covers the fan-out peer and tornado-chat at another commit (``HEAD``, checked
out into a temporary worktree). No npm and no network: only the peers that need nothing but Tornado.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import median_of
from bench.sysinfo import histogram_quantile, parse_metrics, quantiles
from bench.wsframe import OP_CONT, OP_TEXT, encode_frame

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
# Every Python server runs on the loop the bench picks by default: uvloop when installed (the test extra has it).
SERVER_LOOP = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
W1_CLIENTS, W1_MESSAGES = 20, 200
W2_IDLE, W2_PAIRS, W2_ROUNDTRIPS = 50, 5, 40
W3_CONNECTIONS = 100
W4_CONNECTIONS, W4_DEAD = 50, 5
TARGETS = ("tornado-chat", "tornado-plain")


def run_bench(out: Path, *args: str, timeout: float = 50) -> tuple[dict[str, Any], str]:
    """``python -m bench`` from the checkout's root; the JSON it wrote and what it printed."""
    command = [sys.executable, "-m", "bench", "--quiet", *args, "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), done.stdout


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    return run_bench(
        tmp_path_factory.mktemp("bench") / "bench.json",
        "--runs", "1", "--timeout", "20",
        "--targets", ",".join(TARGETS), "--workloads", "w1,w2,w2_sse,w3,w4,w5",
        "--w1-clients", str(W1_CLIENTS), "--w1-messages", str(W1_MESSAGES),
        "--w2-idle", str(W2_IDLE), "--w2-pairs", str(W2_PAIRS), "--w2-roundtrips", str(W2_ROUNDTRIPS),
        "--w3-connections", str(W3_CONNECTIONS),
        "--w4-connections", str(W4_CONNECTIONS), "--w4-dead", str(W4_DEAD), "--w4-window", "1.2",
        "--w4-ping-interval", "1", "--w4-ping-timeout", "0.5", "--w4-heartbeat-tick", "0.05",
        "--w5-senders", "4", "--w5-messages", "40",
    )  # fmt: skip


def median(document: dict[str, Any], workload: str, target: str) -> dict[str, Any]:
    entry = document["results"][workload][target]
    assert len(entry["runs"]) == 1 and entry["runs_ok"] == 1, entry
    result: dict[str, Any] = entry["median"]
    return result


@pytest.mark.timeout(60)
def test_the_report_names_the_machine_the_command_and_every_workload(bench: tuple[dict[str, Any], str]) -> None:
    document, table = bench
    machine = document["machine"]
    assert machine["cpus"] >= 1 and machine["cpu_model"] and machine["python"] and machine["tornado"]
    assert document["command"].startswith("python -m bench ") and "--w1-clients 20" in document["command"]
    assert document["targets"] == list(TARGETS)
    assert set(document["results"]) == {f"w1_{W1_CLIENTS}", "w2", "w2_sse", "w3", "w4", "w5_group", "w5_batch1"}
    for heading in ("W1 room fan-out", "W2 direct messages", "W3 memory", "W4 heartbeat", "W5 durable sends"):
        assert heading in table
    assert "over an event stream + POST (HTTP fallback)" in table
    assert document["ratios"][f"w1_{W1_CLIENTS}"]["tornado-plain"] > 0


@pytest.mark.parametrize("target", TARGETS)
def test_fan_out_delivers_every_message_once_to_every_member(bench: tuple[dict[str, Any], str], target: str) -> None:
    w1 = median(bench[0], f"w1_{W1_CLIENTS}", target)
    assert w1["clients"] == W1_CLIENTS and w1["messages"] == W1_MESSAGES
    assert w1["deliveries"] == W1_CLIENTS * W1_MESSAGES
    assert w1["missing"] == 0 and w1["duplicates"] == 0
    assert w1["acks"] == W1_MESSAGES + w1["warmup_messages"]
    assert w1["latency_samples"] == W1_CLIENTS * W1_MESSAGES
    assert 0 < w1["latency_p50_ms"] <= w1["latency_p99_ms"] <= w1["latency_max_ms"]
    assert w1["deliveries_per_s"] > 0 and w1["elapsed_s"] > 0
    assert w1["server_cpu_s"] >= 0 and w1["bench_cpu_s"] > 0


@pytest.mark.parametrize("target", TARGETS)
def test_direct_messages_round_trip_exactly(bench: tuple[dict[str, Any], str], target: str) -> None:
    w2 = median(bench[0], "w2", target)
    assert w2["idle_connections"] == W2_IDLE and w2["pairs"] == W2_PAIRS
    assert w2["messages"] == w2["delivered"] == 2 * W2_PAIRS * W2_ROUNDTRIPS
    assert w2["acks"] == w2["sends"] == 2 * W2_PAIRS * (W2_ROUNDTRIPS + w2["warmup_roundtrips_per_pair"])
    assert w2["rtt_samples"] == W2_PAIRS * W2_ROUNDTRIPS
    assert 0 < w2["rtt_p50_ms"] <= w2["rtt_p99_ms"]
    assert w2["messages_per_s"] > 0


def test_direct_messages_over_the_http_fallback_round_trip_exactly(bench: tuple[dict[str, Any], str]) -> None:
    document = bench[0]
    w2 = median(document, "w2_sse", "tornado-chat")
    assert w2["transport"] == "sse+post" and median(document, "w2", "tornado-chat")["transport"] == "websocket"
    assert w2["idle_connections"] == W2_IDLE and w2["pairs"] == W2_PAIRS
    assert w2["messages"] == w2["delivered"] == 2 * W2_PAIRS * W2_ROUNDTRIPS
    # Every send was answered with its ack in the POST's reply.
    assert w2["acks"] == w2["sends"] == 2 * W2_PAIRS * (W2_ROUNDTRIPS + w2["warmup_roundtrips_per_pair"])
    assert w2["rtt_samples"] == W2_PAIRS * W2_ROUNDTRIPS
    assert 0 < w2["rtt_p50_ms"] <= w2["rtt_p99_ms"] and w2["messages_per_s"] > 0
    (peer,) = document["results"]["w2_sse"]["tornado-plain"]["runs"]
    assert "no HTTP fallback" in peer["not_available"]


@pytest.mark.parametrize("target", TARGETS)
def test_memory_grows_with_connections(bench: tuple[dict[str, Any], str], target: str) -> None:
    w3 = median(bench[0], "w3", target)
    assert w3["connections"] == W3_CONNECTIONS
    assert 0 < w3["rss_empty_kib"] <= w3["rss_after_logins_kib"] <= w3["rss_connected_kib"]
    assert w3["kib_per_connection"] > 0


@pytest.mark.parametrize("target", TARGETS)
def test_heartbeat_drops_exactly_the_dead_clients(bench: tuple[dict[str, Any], str], target: str) -> None:
    w4 = median(bench[0], "w4", target)
    assert w4["connections"] == W4_CONNECTIONS
    assert w4["dead_clients"] == w4["dead_dropped"] == W4_DEAD
    assert w4["live_clients_dropped"] == 0
    assert w4["detect_wall_max_s"] > 0 and w4["probe_rtt_samples"] > 0
    if target == "tornado-chat":
        # Read from the server's own histograms over the window.
        assert w4["reaped"] == W4_DEAD
        assert w4["loop_lag_samples"] > 0 and w4["loop_lag_p50_ms"] is not None
        assert w4["ticks"] > 0 and w4["tick_p99_ms"] is not None
        assert w4["pings_sent"] > 0


def test_durable_sends_run_or_say_why_not(bench: tuple[dict[str, Any], str]) -> None:
    document = bench[0]
    for variant in ("w5_group", "w5_batch1"):
        (run,) = document["results"][variant]["tornado-chat"]["runs"]
        if "not_available" in run:  # the SQLite store has not landed in this build
            assert "exit 2" in run["not_available"]
        else:
            assert run["acked"] == run["messages"] and run["errors"] == 0 and run["acked_per_s"] > 0
        (peer,) = document["results"][variant]["tornado-plain"]["runs"]
        assert "no durable store" in peer["not_available"]


def test_every_python_server_runs_on_the_same_loop_and_the_tables_say_so(bench: tuple[dict[str, Any], str]) -> None:
    document, table = bench
    assert document["server_event_loop"] == SERVER_LOOP
    assert document["target_event_loops"] == dict.fromkeys(TARGETS, SERVER_LOOP)
    for key, entry in document["results"].items():
        for name in TARGETS:
            assert entry[name]["event_loop"] == SERVER_LOOP, (key, name)
            for run in entry[name]["runs"]:
                if "not_available" not in run:
                    assert run["event_loop"] == SERVER_LOOP, (key, name)  # read from the server's process
    header = next(line for line in table.splitlines() if line.startswith("target "))
    assert header.split()[1:3] == ["event", "loop"]
    rows = [line.split() for line in table.splitlines() if line.split()[:1] == ["tornado-plain"]]
    assert rows and all(row[1] == SERVER_LOOP for row in rows)


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    payload = b'{"type":"join","room":"general"}' * 5  # 165 bytes: a 16-bit length
    frame = encode_frame(OP_TEXT, payload)
    assert frame[0] == 0x81 and frame[1] == 0x80 | 126
    assert int.from_bytes(frame[2:4], "big") == len(payload)
    mask, masked = frame[4:8], frame[8:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(masked)) == payload
    assert encode_frame(OP_TEXT, b"")[1:2] == b"\x80" and len(encode_frame(OP_TEXT, b"")) == 6
    big = encode_frame(OP_TEXT, b"x" * 70000)
    assert big[1] == 0x80 | 127 and int.from_bytes(big[2:10], "big") == 70000 and len(big) == 14 + 70000


def test_unmasked_and_non_final_frames_for_negative_and_fragment_tests() -> None:
    assert encode_frame(OP_TEXT, b"hi", masked=False) == b"\x81\x02hi"
    assert encode_frame(OP_TEXT, b"x" * 200, masked=False)[:4] == b"\x81\x7e\x00\xc8"
    assert encode_frame(OP_TEXT, b"he", final=False)[0] == 0x01
    assert encode_frame(OP_CONT, b"llo", masked=False) == b"\x80\x03llo"


def test_histogram_quantiles_follow_prometheus() -> None:
    text = "\n".join(
        [
            "# TYPE lag histogram",
            'lag_bucket{le="0.001"} 50.0',
            'lag_bucket{le="0.002"} 90.0',
            'lag_bucket{le="0.005"} 100.0',
            'lag_bucket{le="+Inf"} 100.0',
            "lag_count 100.0",
        ]
    )
    samples = parse_metrics(text)
    buckets = sorted((float(k.split('"')[1]), v) for k, v in samples.items() if k.startswith("lag_bucket"))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.001)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.0015)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.0047)
    assert histogram_quantile(0.5, [(1.0, 0.0)]) is None
    assert quantiles([3.0, 1.0, 2.0, 4.0], (0.5, 0.99)) == [2.0, 4.0]


def test_medians_over_runs() -> None:
    runs: list[dict[str, Any]] = [
        {"rate": 1.0, "ok": True, "name": "a"},
        {"rate": 3.0, "ok": False, "name": "a"},
        {"rate": 2.0},
    ]
    assert median_of(runs) == {"rate": 2.0, "ok": False, "name": "a"}


# ---------------------------------------------------------------- the fan-out peer and --baseline-ref

FAST_CLIENTS, FAST_MESSAGES = 20, 100


@pytest.fixture(scope="module")
def against_head(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tornado-chat, tornado-chat as of HEAD (a temporary worktree) and tornado-fast: W1 and W2 only."""
    document, _ = run_bench(
        tmp_path_factory.mktemp("bench-head") / "bench.json",
        "--runs", "1", "--timeout", "20", "--targets", "tornado-chat,tornado-fast", "--baseline-ref", "HEAD",
        "--workloads", "w1,w2", "--w1-clients", str(FAST_CLIENTS), "--w1-messages", str(FAST_MESSAGES),
        "--w2-idle", "10", "--w2-pairs", "3", "--w2-roundtrips", "20",
    )  # fmt: skip
    return document


def head_short() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.timeout(60)
def test_a_baseline_commit_runs_from_its_own_worktree_beside_tornado_chat(against_head: dict[str, Any]) -> None:
    document = against_head
    baseline = f"tornado-chat@{head_short()}"
    assert document["targets"] == ["tornado-chat", baseline, "tornado-fast"]
    (info,) = document["baselines"]
    assert info["target"] == baseline and info["ref"] == "HEAD" and len(info["commit"]) == 40
    worktree = Path(info["worktree"])
    # Its server imported tornado_chat from the worktree, not from this checkout.
    assert Path(info["imported_from"]).is_relative_to(worktree)
    assert not Path(info["imported_from"]).is_relative_to(ROOT)
    for key in (f"w1_{FAST_CLIENTS}", "w2"):
        assert document["results"][key][baseline]["runs_ok"] == 1
        assert document["ratios"][key][baseline] > 0
    w1 = median(document, f"w1_{FAST_CLIENTS}", baseline)
    assert w1["deliveries"] == FAST_CLIENTS * FAST_MESSAGES and w1["missing"] == 0 and w1["duplicates"] == 0
    assert document["target_event_loops"][baseline] == SERVER_LOOP
    # And the worktree is gone, from the disk and from git's list.
    assert not worktree.exists()
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    assert str(worktree) not in listed.stdout


def test_the_fan_out_peer_delivers_rooms_and_direct_messages_exactly(against_head: dict[str, Any]) -> None:
    w1 = median(against_head, f"w1_{FAST_CLIENTS}", "tornado-fast")
    assert w1["deliveries"] == FAST_CLIENTS * FAST_MESSAGES and w1["missing"] == 0 and w1["duplicates"] == 0
    assert w1["acks"] == FAST_MESSAGES + w1["warmup_messages"]
    w2 = median(against_head, "w2", "tornado-fast")
    assert w2["messages"] == w2["delivered"] == 2 * 3 * 20
    assert w2["acks"] == w2["sends"]
    assert w1["event_loop"] == w2["event_loop"] == SERVER_LOOP


def test_an_unknown_baseline_ref_is_a_usage_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "--quiet", "--baseline-ref", "no-such-rev-here", "--workloads", "w3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "--baseline-ref" in done.stderr, done.stderr


# ---------------------------------------------------------------- what an idle compressed connection costs


@pytest.mark.timeout(60)
def test_the_deflate_target_measures_idle_compressed_connections_and_runs_nothing_else(tmp_path: Path) -> None:
    document, table = run_bench(
        tmp_path / "bench.json",
        "--runs", "1", "--timeout", "20", "--targets", "tornado-chat-memory,tornado-chat-deflate",
        "--workloads", "w2,w3", "--w2-idle", "10", "--w2-pairs", "2", "--w2-roundtrips", "10",
        "--w3-connections", "50",
    )  # fmt: skip
    w3 = median(document, "w3", "tornado-chat-deflate")
    assert w3["connections"] == 50 and w3["kib_per_connection"] > 0
    skipped = document["results"]["w2"]["tornado-chat-deflate"]["runs"][0]
    assert skipped == {"not_available": "tornado-chat-deflate runs only w3"}
    assert "tornado-chat-deflate" in table


# ---------------------------------------------------------------- W6 search over a stored history

W6_MESSAGES, W6_QUERIES = 3000, 3


@pytest.mark.timeout(90)
def test_search_latency_over_a_built_history(tmp_path: Path) -> None:
    document, table = run_bench(
        tmp_path / "bench.json",
        "--runs", "1", "--timeout", "30", "--targets", "tornado-chat,tornado-plain", "--workloads", "w6",
        "--w6-messages", str(W6_MESSAGES), "--w6-queries", str(W6_QUERIES), "--data-root", str(tmp_path),
    )  # fmt: skip
    assert "W6 search, 3,000 stored messages" in table
    w6 = median(document, "w6", "tornado-chat")
    assert w6["messages"] == W6_MESSAGES and w6["queries"] == W6_QUERIES * 8 and w6["errors"] == 0
    assert 0 < w6["search_p50_ms"] <= w6["search_p99_ms"] <= w6["search_max_ms"]
    assert w6["store_p99_ms"] is not None and w6["db_mib"] > 0
    # The planted words are found, whatever the query's kind; a word that is nowhere is not.
    assert w6["rare_word_found"] == 10
    assert w6["chinese_3_chars_found"] >= 10 and w6["chinese_2_chars_found"] >= 10
    assert w6["common_word_found"] == w6["in_room_found"] == 20 and w6["absent_word_found"] == 0
    (peer,) = document["results"]["w6"]["tornado-plain"]["runs"]
    assert "keeps no history" in peer["not_available"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("chat-bench-search")]  # built stores removed
