"""Medians over runs, ratios to each peer, and the tables (plain text for the terminal, Markdown for docs)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .targets import TORNADO_CHAT

Column = tuple[str, str, Callable[[Any], str]]


def _num(digits: int) -> Callable[[Any], str]:
    return lambda v: f"{v:,.{digits}f}"


def _yes(value: Any) -> str:
    return "yes" if value else "NO"


# Process CPU % of a core, and in brackets how busy that core was (softirq network work included) when pinned.
CPU_COLUMNS: list[Column] = [
    ("server CPU % (core)", "server_cpu_pct", _num(0)),
    ("bench CPU % (core)", "bench_cpu_pct", _num(0)),
    ("other CPU %", "other_cpu_pct", _num(0)),
]
CORE_FIELDS = {"server_cpu_pct": "server_core_busy_pct", "bench_cpu_pct": "bench_core_busy_pct"}
COLUMNS: dict[str, list[Column]] = {
    "w1": [
        ("deliveries/s", "deliveries_per_s", _num(0)),
        ("p50 ms", "latency_p50_ms", _num(2)),
        ("p99 ms", "latency_p99_ms", _num(2)),
        ("missing", "missing", _num(0)),
        ("dup", "duplicates", _num(0)),
        *CPU_COLUMNS,
    ],
    "w2": [
        ("messages/s", "messages_per_s", _num(0)),
        ("RTT p50 ms", "rtt_p50_ms", _num(2)),
        ("RTT p99 ms", "rtt_p99_ms", _num(2)),
        *CPU_COLUMNS,
    ],
    "w3": [
        ("RSS empty MiB", "rss_empty_kib", lambda v: f"{v / 1024:,.1f}"),
        ("RSS connected MiB", "rss_connected_kib", lambda v: f"{v / 1024:,.1f}"),
        ("KiB/conn", "kib_per_connection", _num(2)),
        ("KiB/conn w/o login", "kib_per_connection_excluding_login", _num(2)),
    ],
    "w4": [
        ("lag p50 ms", "loop_lag_p50_ms", _num(2)),
        ("lag p99 ms", "loop_lag_p99_ms", _num(2)),
        ("tick p50 ms", "tick_p50_ms", _num(2)),
        ("tick p99 ms", "tick_p99_ms", _num(2)),
        ("probe RTT p50 ms", "probe_rtt_p50_ms", _num(2)),
        ("probe RTT p99 ms", "probe_rtt_p99_ms", _num(2)),
        ("dead dropped", "dead_dropped", _num(0)),
        ("dropped by s (max)", "detect_wall_max_s", _num(2)),
        ("within I+T+0.5", "detect_within_bound", _yes),
        ("live dropped", "live_clients_dropped", _num(0)),
        *CPU_COLUMNS,
    ],
    "w5": [
        ("acked/s", "acked_per_s", _num(0)),
        ("ack p50 ms", "ack_p50_ms", _num(2)),
        ("ack p99 ms", "ack_p99_ms", _num(2)),
        ("errors", "errors", _num(0)),
        *CPU_COLUMNS,
    ],
    "w6": [
        ("search p50 ms", "search_p50_ms", _num(2)),
        ("search p99 ms", "search_p99_ms", _num(2)),
        ("store p50 ms", "store_p50_ms", _num(2)),
        ("store p99 ms", "store_p99_ms", _num(2)),
        ("chinese <3 p99 ms", "chinese_2_chars_p99_ms", _num(2)),
        ("common p99 ms", "common_word_p99_ms", _num(2)),
        ("errors", "errors", _num(0)),
        ("build s", "build_s", _num(0)),
        ("DB MiB", "db_mib", _num(0)),
    ],
}
# The figure each workload is judged by, and whether more of it is better.
HEADLINE: dict[str, tuple[str, bool]] = {
    "w1": ("deliveries_per_s", True),
    "w2": ("messages_per_s", True),
    "w3": ("kib_per_connection", False),
    "w4": ("probe_rtt_p99_ms", False),
    "w5": ("acked_per_s", True),
    "w6": ("search_p99_ms", False),
}
TITLES = {
    "w1": "W1 room fan-out",
    "w2": "W2 direct messages",
    "w3": "W3 memory",
    "w4": "W4 heartbeat",
    "w5": "W5 durable sends",
    "w6": "W6 search",
}


def family(key: str) -> str:
    return key.split("_", 1)[0]


def _n(value: Any) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def title(key: str, entry: dict[str, Any]) -> str:
    """A workload's heading with its sizes, e.g. 'W1 room fan-out, 1000 clients'."""
    base = TITLES[family(key)]
    median: dict[str, Any] = next((t["median"] for t in entry.values() if t.get("median")), {})
    if family(key) == "w1":
        return (
            f"{base}, {_n(median.get('clients', '?'))} clients, {_n(median.get('messages', '?'))} messages, "
            f"window {_n(median.get('window', '?'))}"
        )
    if family(key) == "w2":
        over = ", over an event stream + POST (HTTP fallback)" if key == "w2_sse" else ""
        return f"{base}, {_n(median.get('idle_connections', '?'))} idle + {_n(median.get('pairs', '?'))} pairs{over}"
    if family(key) == "w3":
        return f"{base}, {_n(median.get('connections', '?'))} idle connections"
    if family(key) == "w4":
        return (
            f"{base}, {_n(median.get('connections', '?'))} connections, ping interval "
            f"{_n(median.get('ping_interval_s', '?'))} s, timeout {_n(median.get('ping_timeout_s', '?'))} s, "
            f"{_n(median.get('dead_clients', '?'))} dead"
        )
    if family(key) == "w5":
        variant = "group commit" if key == "w5_group" else "one commit per message (--max-commit-batch 1)"
        return f"{base}, --store sqlite, {variant}"
    if family(key) == "w6":
        return f"{base}, {_n(median.get('messages', '?'))} stored messages, {_n(median.get('queries', '?'))} queries"
    return base


def median_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per field: the median of numbers, all() of booleans, the first value of anything else."""
    if not runs:
        return {}
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        present = [v for v in values if v is not None]
        if not present:
            merged[key] = None
        elif all(isinstance(v, bool) for v in present):
            merged[key] = all(present)
        elif all(isinstance(v, int | float) for v in present):
            middle = statistics.median(present)
            merged[key] = round(middle, 4) if isinstance(middle, float) else middle
        else:
            merged[key] = present[0]
    return merged


def summarize(
    results: dict[str, dict[str, dict[str, Any]]], loops: dict[str, str] | None = None
) -> dict[str, dict[str, float | None]]:
    """Medians per workload and target (in place), and tornado-chat's headline figure over each peer's.

    Each target's ``event_loop`` is the one its servers were found running on (joined if runs differ), else
    the one it was asked for (``loops``), for a workload it could not run.
    """
    ratios: dict[str, dict[str, float | None]] = {}
    for key, entry in results.items():
        for name, target in entry.items():
            seen = sorted({run["event_loop"] for run in target["runs"] if "event_loop" in run})
            target["event_loop"] = "/".join(seen) if seen else (loops or {}).get(name)
            ok = [run for run in target["runs"] if "error" not in run and "not_available" not in run]
            target["median"] = median_of(ok)
            target["runs_ok"] = len(ok)
            metric, _ = HEADLINE[family(key)]
            values = [run[metric] for run in ok if run.get(metric) is not None]
            target["range"] = [min(values), max(values)] if values else None
        metric, _ = HEADLINE[family(key)]
        ours = entry.get(TORNADO_CHAT, {}).get("median", {}).get(metric)
        ratios[key] = {}
        for name, target in entry.items():
            if name == TORNADO_CHAT:
                continue
            theirs = target.get("median", {}).get(metric)
            ratios[key][name] = round(ours / theirs, 3) if ours and theirs else None
    return ratios


def _status(target: dict[str, Any]) -> str | None:
    if target.get("median"):
        return None
    for run in target["runs"]:
        if "not_available" in run:
            return "not available: " + str(run["not_available"]).splitlines()[0][:140]
        if "error" in run:
            return "error: " + str(run["error"]).splitlines()[0][:100]
    return "no result"


def render(
    results: dict[str, dict[str, dict[str, Any]]], ratios: dict[str, dict[str, float | None]], *, markdown: bool
) -> str:
    """Every workload as a table: one row per target, medians over runs, and the ratio column."""
    out: list[str] = []
    for key, entry in results.items():
        fam = family(key)
        columns = COLUMNS[fam]
        metric, higher_better = HEADLINE[fam]
        ratio_header = f"tornado-chat ÷ target ({metric}, {'higher' if higher_better else 'lower'} is better)"
        header = ["target", "event loop", "runs", *[c[0] for c in columns], ratio_header, "range over runs"]
        rows: list[list[str]] = []
        for name, target in entry.items():
            loop = target.get("event_loop") or "-"
            status = _status(target)
            if status is not None:
                rows.append([name, loop, str(len(target["runs"])), status, *[""] * (len(columns) - 1), "", ""])
                continue
            median = target["median"]
            cells = [name, loop, str(target["runs_ok"])]
            headline_fmt = _num(2)
            for _, field, fmt in columns:
                value = median.get(field)
                cell = "-" if value is None else fmt(value)
                core = median.get(CORE_FIELDS.get(field, ""))
                if value is not None and core is not None:
                    cell += f" ({core:.0f})"
                if field == metric:
                    headline_fmt = fmt
                cells.append(cell)
            ratio = ratios.get(key, {}).get(name)
            cells.append("" if name == TORNADO_CHAT else ("-" if ratio is None else f"{ratio:.2f}x"))
            spread = target.get("range")
            cells.append(f"{headline_fmt(spread[0])} - {headline_fmt(spread[1])}" if spread else "-")
            rows.append(cells)
        heading = title(key, entry)
        if markdown:
            out.append(f"#### {heading}\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(header))) + " |")
            out.extend("| " + " | ".join(row) + " |" for row in rows)
        else:
            out.append(heading)
            short = [*header[:-2], "ratio", "range"]
            widths = [max(len(r[i]) for r in [short, *rows]) for i in range(len(header))]
            out.append("  ".join(h.ljust(w) for h, w in zip(short, widths, strict=True)))
            out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
            out.append(f"  (ratio: {ratio_header}; range: of that figure over the runs)")
        out.append("")
    return "\n".join(out)


def bottleneck_notes(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Where the load generator, not the server, may have set the pace (its CPU near a full core)."""
    notes = []
    for key, entry in results.items():
        for name, target in entry.items():
            median = target.get("median") or {}
            bench = median.get("bench_core_busy_pct", median.get("bench_cpu_pct"))
            server = median.get("server_core_busy_pct", median.get("server_cpu_pct"))
            if bench is None or server is None or bench < 90:
                continue
            if server >= 90:
                notes.append(
                    f"{key} {name}: both cores were busy (server's {server:.0f}%, load generator's {bench:.0f}%): "
                    "this machine could not push this target harder; the figure may be a lower bound"
                )
            else:
                notes.append(
                    f"{key} {name}: the load generator's core was {bench:.0f}% busy against the server's "
                    f"{server:.0f}%: the figure is a lower bound for the server"
                )
    return notes
