"""``python -m bench`` (from a checkout): run the workloads against the chosen targets.

Example (what docs/benchmarks.md was made with)::

    python -m bench --install-peers --pin --runs 1 --baseline-ref d1f1a9e --json docs/benchmarks.json

and tornado-chat against itself at another commit (``--baseline-ref``)::

    python -m bench --targets tornado-chat --baseline-ref main --runs 3

Every target runs side by side in one invocation, workload by workload, so ratios come from the same
run on the same machine. Each server is a subprocess on 127.0.0.1 with ephemeral ports, stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import shlex
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tornado_chat import __version__

from . import report
from .baseline import Baseline, BaselineError, checked_out
from .search import remove_built, w6_search
from .sysinfo import machine_info, raise_nofile_limit
from .targets import (
    ALL_TARGETS,
    TORNADO_CHAT,
    NotAvailable,
    PeerDeps,
    Target,
    baseline_target,
    check_target,
    install_peers,
    make_targets,
    peer_versions,
)
from .workloads import (
    W5_VARIANTS,
    Bench,
    Config,
    Result,
    w1_fanout,
    w2_direct,
    w2_direct_sse,
    w3_memory,
    w4_heartbeat,
    w5_durable,
)

# w2_sse: W2 with every session on tornado-chat's HTTP fallback (an event stream in, POSTed frames out).
WORKLOADS = ("w1", "w2", "w2_sse", "w3", "w4", "w5", "w6")
PROG = "python -m bench"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in _csv(text):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def build_parser() -> argparse.ArgumentParser:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark tornado-chat against small peer servers (Node ws, plain Tornado, websockets) "
        "on this machine's loopback interface.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated servers to run")
    parser.add_argument(
        "--baseline-ref",
        action="append",
        default=[],
        metavar="REV",
        help="also run tornado-chat as of commit REV, checked out into a temporary git worktree, as target "
        "tornado-chat@SHORT-HASH; may be given more than once",
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated workloads ({', '.join(WORKLOADS)})"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of everything; tables show medians")
    parser.add_argument("--json", type=Path, help="write every figure, the machine and the command line here")
    parser.add_argument("--markdown", type=Path, help="write the tables as Markdown here")
    parser.add_argument(
        "--install-peers",
        action="store_true",
        help="install ws (npm) and websockets (pip) into a temporary directory for the peers",
    )
    parser.add_argument("--pin", action="store_true", help="pin servers and the load generator to different cores")
    parser.add_argument("--server-cpus", type=_cpus, default={0}, help="cores for the server with --pin")
    parser.add_argument("--bench-cpus", type=_cpus, default={1}, help="cores for the load generator with --pin")
    parser.add_argument(
        "--no-uvloop", action="store_true", help="load generator: use asyncio's own event loop even with uvloop"
    )
    parser.add_argument(
        "--server-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop of every Python server (tornado-chat's --event-loop, the peers' --loop); "
        "auto: uvloop when installed",
    )
    parser.add_argument("--w1-clients", default="100,1000", help="receiving clients in the room, one W1 per size")
    parser.add_argument("--w1-messages", type=int, default=0, help="messages per W1 size (0: deliveries / clients)")
    parser.add_argument(
        "--w1-deliveries",
        type=int,
        default=defaults.w1_deliveries,
        help="deliveries to aim at per W1 size when --w1-messages is 0",
    )
    parser.add_argument(
        "--w1-window", type=int, default=defaults.w1_window, help="messages in flight (until every member has it)"
    )
    parser.add_argument("--w1-text-bytes", type=int, default=defaults.w1_text_bytes, help="message text size")
    parser.add_argument("--w2-idle", type=int, default=defaults.w2_idle, help="idle connections")
    parser.add_argument("--w2-pairs", type=int, default=defaults.w2_pairs, help="ping-pong pairs")
    parser.add_argument("--w2-roundtrips", type=int, default=defaults.w2_roundtrips, help="round trips per pair")
    parser.add_argument("--w3-connections", type=int, default=defaults.w3_connections, help="idle connections")
    parser.add_argument("--w4-connections", type=int, default=defaults.w4_connections, help="connections")
    parser.add_argument("--w4-dead", type=int, default=defaults.w4_dead, help="clients that stop answering")
    parser.add_argument("--w4-window", type=float, default=defaults.w4_window_s, help="measurement window, s")
    parser.add_argument("--w4-ping-interval", type=float, default=defaults.w4_ping_interval_s, help="seconds")
    parser.add_argument("--w4-ping-timeout", type=float, default=defaults.w4_ping_timeout_s, help="seconds")
    parser.add_argument(
        "--w4-heartbeat-tick",
        type=float,
        default=defaults.w4_heartbeat_tick_s,
        help="tornado-chat's heartbeat tick, seconds",
    )
    parser.add_argument(
        "--w4-probe-hz",
        type=float,
        default=defaults.w4_probe_hz,
        help="round trips per second of the latency probe pair",
    )
    parser.add_argument("--w5-senders", type=int, default=defaults.w5_senders, help="concurrent senders")
    parser.add_argument("--w5-messages", type=int, default=defaults.w5_messages, help="messages in all")
    parser.add_argument(
        "--w6-messages", type=int, default=defaults.w6_messages, help="messages in the stored history searched"
    )
    parser.add_argument("--w6-queries", type=int, default=defaults.w6_queries, help="queries of each kind")
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=defaults.connect_concurrency,
        help="WebSocket handshakes in progress at once",
    )
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="limit of every wait, seconds")
    parser.add_argument("--data-root", type=Path, help="where servers' temporary data directories go")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample Python servers with py-spy in the W1, W2, W4 and W5 windows; profiles go here",
    )
    parser.add_argument("--py-spy", help="py-spy executable for --profile (default: on PATH or beside Python)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--version", action="version", version=f"tornado-chat-bench {__version__}")
    return parser


def server_loop(choice: str) -> str:
    """The event loop every Python server runs on: the choice, or with ``auto`` uvloop when it is installed."""
    if choice != "auto":
        return choice
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def config_from(args: argparse.Namespace, log: Callable[[str], None]) -> Config:
    return Config(
        w1_clients=tuple(int(n) for n in _csv(args.w1_clients)),
        w1_messages=args.w1_messages,
        w1_deliveries=args.w1_deliveries,
        w1_window=args.w1_window,
        w1_text_bytes=args.w1_text_bytes,
        w2_idle=args.w2_idle,
        w2_pairs=args.w2_pairs,
        w2_roundtrips=args.w2_roundtrips,
        w3_connections=args.w3_connections,
        w4_connections=args.w4_connections,
        w4_dead=args.w4_dead,
        w4_window_s=args.w4_window,
        w4_ping_interval_s=args.w4_ping_interval,
        w4_ping_timeout_s=args.w4_ping_timeout,
        w4_heartbeat_tick_s=args.w4_heartbeat_tick,
        w4_probe_hz=args.w4_probe_hz,
        w5_senders=args.w5_senders,
        w5_messages=args.w5_messages,
        w6_messages=args.w6_messages,
        w6_queries=args.w6_queries,
        connect_concurrency=args.connect_concurrency,
        timeout_s=args.timeout,
        server_loop=server_loop(args.server_loop),
        server_cpus=args.server_cpus if args.pin else None,
        bench_cpus=args.bench_cpus if args.pin else None,
        data_root=args.data_root,
        profile_dir=args.profile,
        py_spy=args.py_spy,
        log=log,
    )


def plan(config: Config, workloads: Sequence[str]) -> list[tuple[str, Callable[[Bench, Target], Awaitable[Result]]]]:
    """The workload runs in order, as (result key, coroutine function)."""
    steps: list[tuple[str, Callable[[Bench, Target], Awaitable[Result]]]] = []
    for name in workloads:
        if name == "w1":
            for size in config.w1_clients:
                steps.append((f"w1_{size}", lambda b, t, size=size: w1_fanout(b, t, size)))  # type: ignore[misc]
        elif name == "w2":
            steps.append(("w2", w2_direct))
        elif name == "w2_sse":
            steps.append(("w2_sse", w2_direct_sse))
        elif name == "w3":
            steps.append(("w3", w3_memory))
        elif name == "w4":
            steps.append(("w4", w4_heartbeat))
        elif name == "w5":
            for variant in W5_VARIANTS:
                steps.append((variant, lambda b, t, variant=variant: w5_durable(b, t, variant)))  # type: ignore[misc]
        elif name == "w6":
            steps.append(("w6", w6_search))
    return steps


async def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    log: Callable[[str], None] = (lambda _: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    names = _csv(args.targets)
    unknown = [n for n in names if n not in ALL_TARGETS]
    workloads = _csv(args.workloads)
    bad_workloads = [w for w in workloads if w not in WORKLOADS]
    if unknown or bad_workloads:
        print(f"tornado-chat-bench: unknown targets {unknown} or workloads {bad_workloads}", file=sys.stderr)
        return 2
    try:
        with checked_out(args.baseline_ref, log) as baselines:
            return await run_targets(args, argv, log, names, workloads, baselines)
    except BaselineError as exc:
        print(f"tornado-chat-bench: --baseline-ref: {exc}", file=sys.stderr)
        return 2
    finally:
        remove_built()


async def run_targets(
    args: argparse.Namespace,
    argv: Sequence[str],
    log: Callable[[str], None],
    names: list[str],
    workloads: list[str],
    baselines: list[Baseline],
) -> int:
    config = config_from(args, log)
    # Each commit's row right below tornado-chat's, where there is one.
    at = names.index(TORNADO_CHAT) + 1 if TORNADO_CHAT in names else len(names)
    names = [*names[:at], *(b.name for b in baselines), *names[at:]]
    with tempfile.TemporaryDirectory(prefix="chat-bench-peers-") as peers_tmp:
        deps = PeerDeps()
        if args.install_peers:
            deps = await asyncio.to_thread(install_peers, names, Path(peers_tmp), log)
        all_targets = make_targets(deps)
        all_targets.update((b.name, baseline_target(b)) for b in baselines)
        targets: dict[str, Target] = {}
        skipped: dict[str, str] = {}
        for name in names:
            problem = check_target(all_targets[name])
            if problem is None:
                targets[name] = all_targets[name]
            else:
                skipped[name] = problem
                log(f"skipping {name}: {problem}")
        machine = machine_info()
        machine["cpus_usable"] = getattr(args, "cpus_before_pin", machine["cpus_usable"])
        machine["peer_libraries"] = peer_versions(deps, targets)
        bench = Bench(config)
        expected_loops = {name: target.expected_loop(config.server_loop) for name, target in targets.items()}
        results: dict[str, dict[str, dict[str, Any]]] = {}
        failures = 0
        steps = plan(config, workloads)
        for run_index in range(args.runs):
            for key, workload in steps:
                entry = results.setdefault(key, {})
                # Rotate the order of targets from run to run so that no target always goes first.
                order = list(targets)
                shift = run_index % len(order) if order else 0
                for name in order[shift:] + order[:shift]:
                    target_entry = entry.setdefault(name, {"runs": []})
                    log(f"run {run_index + 1}/{args.runs} {key} {name} ...")
                    bench.event_loop = None
                    try:
                        runs_only = targets[name].workloads
                        if runs_only is not None and key.split("_")[0] not in runs_only:
                            raise NotAvailable(f"{name} runs only {', '.join(runs_only)}")
                        outcome = await workload(bench, targets[name])
                    except NotAvailable as exc:
                        outcome = {"not_available": str(exc)}
                        log(f"  not available: {exc}")
                    except Exception as exc:  # noqa: BLE001 - one failed run is reported, the rest go on
                        failures += 1
                        outcome = {"error": f"{type(exc).__name__}: {exc}"}
                        log(f"  FAILED: {type(exc).__name__}: {exc}")
                        if not args.quiet:
                            traceback.print_exc()
                    else:
                        log("  " + _progress(outcome))
                    if bench.event_loop is not None:
                        outcome["event_loop"] = bench.event_loop
                        if bench.event_loop != expected_loops[name]:
                            log(f"  {name} ran on {bench.event_loop}, not {expected_loops[name]}")
                    target_entry["runs"].append(outcome)
            # Keep results in a stable target order for the tables.
        for key, entry in results.items():
            results[key] = {name: entry[name] for name in targets if name in entry}
        ratios = report.summarize(results, expected_loops)
        document = {
            "tool": "tornado-chat-bench",
            "version": __version__,
            "started": _now(),
            "command": " ".join(shlex.quote(a) for a in argv),
            "argv": list(argv),
            "machine": machine,
            "pinning": {"server_cpus": sorted(args.server_cpus), "bench_cpus": sorted(args.bench_cpus)}
            if args.pin
            else None,
            "event_loop": _loop_name(),
            "server_event_loop": config.server_loop,
            "target_event_loops": {
                name: next((entry[name]["event_loop"] for entry in results.values() if name in entry), loop)
                for name, loop in expected_loops.items()
            },
            "baselines": [
                {
                    "target": b.name,
                    "ref": b.ref,
                    "commit": b.commit,
                    "worktree": str(b.path),
                    "imported_from": all_targets[b.name].imported_from,
                }
                for b in baselines
            ],
            "load_generator": "one process (the coordinator), lean asyncio WebSocket client",
            "config": _config_json(config),
            "runs": args.runs,
            "targets": list(targets),
            "skipped_targets": skipped,
            "results": results,
            "ratios": ratios,
            "bottleneck_notes": report.bottleneck_notes(results),
            "profiles": config.profiles,
        }
        print(_header(document))
        print(report.render(results, ratios, markdown=False))
        for note in document["bottleneck_notes"]:
            print("note: " + note)
        if args.json is not None:
            args.json.write_text(json.dumps(document, indent=2) + "\n")
        if args.markdown is not None:
            args.markdown.write_text(report.render(results, ratios, markdown=True))
        return 1 if failures else 0


def _progress(outcome: Result) -> str:
    keys = (
        "deliveries_per_s",
        "messages_per_s",
        "kib_per_connection",
        "loop_lag_p99_ms",
        "probe_rtt_p99_ms",
        "detect_wall_max_s",
        "acked_per_s",
        "search_p50_ms",
        "search_p99_ms",
        "latency_p99_ms",
        "rtt_p99_ms",
        "server_cpu_pct",
        "bench_cpu_pct",
    )
    return " ".join(f"{k}={outcome[k]}" for k in keys if k in outcome)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def _config_json(config: Config) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, set | tuple):
            return sorted(value) if isinstance(value, set) else list(value)
        return str(value) if isinstance(value, Path) else value

    return {key: plain(value) for key, value in vars(config).items() if key not in ("log", "profiles")}


def _header(document: dict[str, Any]) -> str:
    m = document["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m.get("peer_libraries", {}).items())
    return (
        f"tornado-chat-bench {document['version']}  {document['started']}\n"
        f"machine: {m['cpu_model']}, {m['cpus']} cores, {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}\n"
        f"versions: Python {m['python']}, Tornado {m['tornado']}, uvloop {m['uvloop']}, Node {m['node']}"
        + (f", {libs}" if libs else "")
        + f"\nevent loop of the load generator: {document['event_loop']}; of the Python servers: "
        f"{document['server_event_loop']} (each target's in the tables); pinning: {document['pinning']}\n"
        f"command: {document['command']}\nmedians of {document['runs']} run(s)\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code (1 if any run failed)."""
    args = build_parser().parse_args(argv)
    raise_nofile_limit()
    args.cpus_before_pin = len(os.sched_getaffinity(0))
    if args.pin:
        os.sched_setaffinity(0, args.bench_cpus)
    full_argv = [*PROG.split(), *(sys.argv[1:] if argv is None else argv)]
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        try:
            import uvloop  # noqa: PLC0415 - optional speed-up

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run(args, full_argv))


if __name__ == "__main__":
    sys.exit(main())
