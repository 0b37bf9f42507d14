"""W6 search: latency of ``search`` frames over a big stored history (1,000,000 messages by default).

The store is built directly, not through the WebSocket: deterministic pseudo-random messages go into a
fresh SQLite database through the store's own SQL (``sqlite_messages.insert_messages``, which also keeps the
search indexes and read state), in large transactions without fsync. It is built once per bench invocation
and size, and each run starts a fresh server on its own copy. One client (a guest) joins every room, then
asks one query at a time, several times each of a fixed set of kinds, and times each answer from its write
to its arrival; the server's own ``chat_search_seconds`` histogram is read for comparison.

History: rooms ``s0``..``s19`` (88% of messages), direct (10%) and group (2%) conversations among 200
senders; 3% of messages are Chinese, the rest words drawn with a Zipf-like skew from a vocabulary of 5,000
made-up words. Ten room messages carry a word that appears nowhere else and a Chinese phrase.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import tempfile
from array import array
from pathlib import Path
from time import perf_counter
from typing import Any

from tornado_chat.sqlite_messages import insert_messages, join_room
from tornado_chat.sqlite_schema import DB_FILE, connect, migrate
from tornado_chat.store import Draft

from .sysinfo import bucket_delta, histogram_quantile, quantiles
from .targets import NotAvailable, ServerOptions, Target
from .workloads import Bench, Result, _latency_fields, _ms
from .wsclient import WSClient

ROOMS = 20
SENDERS = 200
VOCABULARY = 5_000
NEEDLES = 10
NEEDLE = "zqxjneedle"
CJK_NEEDLE = "世界天气明朝"
BUILD_BATCH = 10_000
SEED = 14
CJK = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你说年家发当没好世界天气明朝"
# What each kind of query asks; the searcher's scope is every room, or one room (``in_room``).
QUERY_KINDS: dict[str, dict[str, Any]] = {
    "common_word": {"q": "w1q"},
    "rare_word": {"q": NEEDLE},
    "two_words": {"q": "w40q w41q"},
    "prefix": {"q": "w12"},
    "absent_word": {"q": "nosuchwordanywhere"},
    "chinese_3_chars": {"q": "世界天"},
    "chinese_2_chars": {"q": "气明"},
    "in_room": {"q": "w0q", "room": "s3"},
}
# Built stores, by size: shared by every run and target of one bench invocation.
_BUILT: dict[int, tuple[Path, float]] = {}


def _word(rank: int) -> str:
    """A made-up word, never the start of another one ("w1q" is not a prefix of "w12q")."""
    return f"w{rank}q"


def _text(rng: random.Random, cumulative: list[float]) -> str:
    if rng.random() < 0.03:
        return "".join(rng.choice(CJK) for _ in range(rng.randint(6, 20)))
    ranks = rng.choices(range(VOCABULARY), cum_weights=cumulative, k=rng.randint(5, 15))
    return " ".join(_word(rank) for rank in ranks)


def build_history(directory: Path, messages: int) -> float:
    """Write ``messages`` messages into a new store in ``directory``; returns the seconds it took."""
    started = perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    connection = connect(directory / DB_FILE, "normal")
    try:
        migrate(connection)
        connection.execute("PRAGMA synchronous=OFF")
        rng = random.Random(SEED)
        cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(VOCABULARY)))
        needles = set(rng.sample(range(messages), min(NEEDLES, messages)))
        senders = [f"u{i}" for i in range(SENDERS)]
        # The rooms exist before their history, with a member each, as on a server that stored it: a room made
        # after its messages would start past them and search none of them.
        connection.execute("BEGIN")
        for room in range(ROOMS):
            join_room(connection, user=senders[0], room=f"s{room}", seq=0, now=0.0)
        connection.execute("COMMIT")
        for start in range(0, messages, BUILD_BATCH):
            drafts = []
            for n in range(start, min(messages, start + BUILD_BATCH)):
                sender = rng.choice(senders)
                text = _text(rng, cumulative)
                pick = rng.random()
                if n in needles:
                    needle = f"{text} {NEEDLE} {CJK_NEEDLE}"
                    drafts.append(Draft(sender, needle, float(n), f"b{n}", room=f"s{n % ROOMS}"))
                elif pick < 0.88:
                    drafts.append(Draft(sender, text, float(n), f"b{n}", room=f"s{rng.randrange(ROOMS)}"))
                elif pick < 0.98:
                    drafts.append(Draft(sender, text, float(n), f"b{n}", to=rng.choice(senders)))
                else:
                    members = tuple(sorted({sender, *rng.sample(senders, 3)}))
                    drafts.append(Draft(sender, text, float(n), f"b{n}", members=members))
            connection.execute("BEGIN")
            insert_messages(connection, drafts)
            connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return perf_counter() - started


async def built_history(bench: Bench) -> tuple[Path, float]:
    """The built store for this size (made on first use, in a thread), and how long building it took."""
    size = bench.cfg.w6_messages
    if size not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix="chat-bench-search-", dir=bench.cfg.data_root))
        bench.cfg.log(f"  building a store of {size:,} messages in {root} ...")
        seconds = await asyncio.to_thread(build_history, root / "data", size)
        _BUILT[size] = (root / "data", seconds)
    return _BUILT[size]


def remove_built() -> None:
    """Delete every store built in this process (the bench calls it when it ends)."""
    for path, _ in _BUILT.values():
        shutil.rmtree(path.parent, ignore_errors=True)
    _BUILT.clear()


class Searcher:
    """One client that asks one query at a time and waits for its answer."""

    def __init__(self, client: WSClient) -> None:
        self.client = client
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.joined = 0
        self.all_joined = asyncio.Event()
        self.errors: list[str] = []
        client.on_text = self.on_text

    def on_text(self, client: WSClient, payload: bytes, now: float) -> None:
        if b'"search"' not in payload and b'"joined"' not in payload and b'"error"' not in payload:
            return
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "joined":
            self.joined += 1
            if self.joined == ROOMS:
                self.all_joined.set()
        elif kind == "error":
            self.errors.append(frame.get("message", ""))
            future = self.waiting.pop(str(frame.get("id")), None)
            if future is not None and not future.done():
                future.set_exception(RuntimeError(f"search failed: {frame}"))
        elif kind == "search":
            future = self.waiting.pop(str(frame.get("id")), None)
            if future is not None and not future.done():
                frame["received_at"] = now
                future.set_result(frame)

    async def ask(self, frame_id: str, fields: dict[str, Any], timeout: float) -> tuple[float, dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[frame_id] = future
        sent = perf_counter()
        self.client.send_json({"type": "search", "id": frame_id, **fields})
        answer = await asyncio.wait_for(future, timeout)
        return float(answer["received_at"]) - sent, answer


async def w6_search(bench: Bench, target: Target) -> Result:
    """Search latency over a stored history of ``w6_messages`` (see the module docstring)."""
    cfg = bench.cfg
    if not target.durable_store:
        raise NotAvailable(f"{target.name} keeps no history to search")
    if target.source is not None and not (target.source / "tornado_chat" / "sqlite_search.py").exists():
        raise NotAvailable(f"{target.name} has no search")  # an older commit (--baseline-ref)
    source, build_s = await built_history(bench)
    with tempfile.TemporaryDirectory(prefix="chat-bench-search-run-", dir=cfg.data_root) as scratch:
        data = Path(scratch) / "data"
        await asyncio.to_thread(shutil.copytree, source, data)
        options = ServerOptions(extra_args=("--store", "sqlite", "--data-dir", str(data)))
        async with bench.server(target, options) as server:
            (client,) = await bench.connect(server, ["searcher"])
            searcher = Searcher(client)
            for room in range(ROOMS):
                client.send_json({"type": "join", "room": f"s{room}"})
            await asyncio.wait_for(searcher.all_joined.wait(), cfg.timeout_s)
            before = await bench.scrape(server) if target.has_metrics else {}
            latencies: array[float] = array("d")
            result: Result = {"messages": cfg.w6_messages, "build_s": round(build_s, 1)}
            for kind, fields in QUERY_KINDS.items():
                times: list[float] = []
                found = 0
                for n in range(cfg.w6_queries):
                    seconds, answer = await searcher.ask(f"{kind}-{n}", fields, cfg.timeout_s)
                    times.append(seconds)
                    found = len(answer["results"])
                latencies.extend(times)
                p50, p99 = quantiles(times, (0.5, 0.99))
                result[f"{kind}_p50_ms"] = _ms(p50)
                result[f"{kind}_p99_ms"] = _ms(p99)
                result[f"{kind}_found"] = found
            after = await bench.scrape(server) if target.has_metrics else {}
    result.update(_latency_fields("search", latencies))
    result["queries"] = len(latencies)
    result["errors"] = len(searcher.errors)
    result["db_mib"] = round(_size_mib(source), 1)
    if target.has_metrics:
        store = bucket_delta(before, after, "chat_search_seconds")
        result["store_p50_ms"] = _ms(histogram_quantile(0.5, store))
        result["store_p99_ms"] = _ms(histogram_quantile(0.99, store))
    return result


def _size_mib(directory: Path) -> float:
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file()) / 2**20
