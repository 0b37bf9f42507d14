"""What the machine is, what processes cost (CPU time, RSS), and Prometheus histograms read as quantiles."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter

import tornado

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    user, system = process_cpu_split(pid)
    return user + system


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        stat = file.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def own_cpu_s() -> float:
    """User + system CPU seconds of this process (the load generator)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", "rb") as file:
        for line in file:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_nofile_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def core_ticks() -> dict[int, tuple[int, int, int]]:
    """Per core, from /proc/stat: (busy, softirq, total) clock ticks since boot."""
    cores: dict[int, tuple[int, int, int]] = {}
    with open("/proc/stat") as file:
        for line in file:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
                total = user + nice + system + idle + iowait + irq + softirq + steal
                cores[int(name[3:])] = (total - idle - iowait, softirq, total)
    return cores


def _busy(
    before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]], cpus: set[int]
) -> tuple[float, float]:
    """Busy and softirq percentages of ``cpus`` (all of them together) between two core_ticks() readings."""
    busy = softirq = total = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            softirq += after[cpu][1] - before[cpu][1]
            total += after[cpu][2] - before[cpu][2]
    if not total:
        return 0.0, 0.0
    return round(100 * busy / total, 1), round(100 * softirq / total, 1)


@dataclass
class CpuWindow:
    """CPU seconds of the server and of the load generator over one measurement window.

    Process CPU time leaves out the kernel's network work that Linux books as softirq time, which on
    loopback is a large share; so the window also reports how busy the cores were (the server's and the
    generator's cores when pinned), which says better whether either side ran out of CPU.
    """

    server_pid: int
    server_cpus: set[int] | None = None
    bench_cpus: set[int] | None = None
    cores_start: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    cores_stop: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    started: float = 0.0
    server_start: float = 0.0
    server_sys_start: float = 0.0
    server_sys_s: float = 0.0
    own_start: float = 0.0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0

    def start(self) -> CpuWindow:
        user, system = process_cpu_split(self.server_pid)
        self.server_start, self.server_sys_start = user + system, system
        self.own_start = own_cpu_s()
        self.cores_start = core_ticks()
        self.started = perf_counter()
        return self

    def stop(self) -> CpuWindow:
        self.wall_s = perf_counter() - self.started
        user, system = process_cpu_split(self.server_pid)
        self.server_cpu_s = user + system - self.server_start
        self.server_sys_s = system - self.server_sys_start
        self.bench_cpu_s = own_cpu_s() - self.own_start
        self.cores_stop = core_ticks()
        return self

    def fields(self) -> dict[str, float]:
        wall = self.wall_s or 1e-9
        return {
            "elapsed_s": round(self.wall_s, 4),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_sys_cpu_s": round(self.server_sys_s, 3),
            "bench_cpu_s": round(self.bench_cpu_s, 3),
            "server_cpu_pct": round(100 * self.server_cpu_s / wall, 1),
            "bench_cpu_pct": round(100 * self.bench_cpu_s / wall, 1),
            **self.core_fields(),
        }

    def core_fields(self) -> dict[str, float]:
        if not self.cores_start or not self.cores_stop:
            return {}
        # Everything else that ran on the machine meanwhile (other processes, kernel threads, softirq), in
        # percent of one core: on a shared machine, a window with much of it is a disturbed window.
        all_busy, _ = _busy(self.cores_start, self.cores_stop, set(self.cores_stop))
        wall = self.wall_s or 1e-9
        other = all_busy * len(self.cores_stop) - 100 * (self.server_cpu_s + self.bench_cpu_s) / wall
        fields = {"other_cpu_pct": round(max(0.0, other), 1)}
        if self.server_cpus and self.bench_cpus:
            server_busy, server_softirq = _busy(self.cores_start, self.cores_stop, self.server_cpus)
            bench_busy, bench_softirq = _busy(self.cores_start, self.cores_stop, self.bench_cpus)
            fields.update(
                {
                    "server_core_busy_pct": server_busy,
                    "server_core_softirq_pct": server_softirq,
                    "bench_core_busy_pct": bench_busy,
                    "bench_core_softirq_pct": bench_softirq,
                }
            )
        return fields
        return {}


def _command_version(command: Sequence[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or None


def machine_info() -> dict[str, object]:
    """CPU model, cores, memory, kernel and the versions of what runs the benchmark."""
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
                    break
    except OSError:
        pass
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "tornado": tornado.version,
        "uvloop": uvloop_version,
        "node": _command_version(["node", "--version"]),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as file:
            for line in file:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


# ---------------------------------------------------------------- Prometheus text format

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LE = re.compile(r'le="([^"]+)"')


def parse_metrics(text: str) -> dict[str, float]:
    """Samples of the Prometheus text format as ``{name{labels}: value}`` (labels as written)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is not None:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def histogram_buckets(samples: dict[str, float], name: str) -> list[tuple[float, float]]:
    """Cumulative buckets of histogram ``name`` (no other labels) as sorted (upper bound, count)."""
    buckets = []
    prefix = name + "_bucket{"
    for key, value in samples.items():
        if key.startswith(prefix):
            match = _LE.search(key)
            if match is not None:
                buckets.append((float(match.group(1)), value))
    return sorted(buckets)


def bucket_delta(before: dict[str, float], after: dict[str, float], name: str) -> list[tuple[float, float]]:
    """The histogram's observations between two scrapes, as cumulative (bound, count) buckets."""
    old = dict(histogram_buckets(before, name))
    return [(bound, count - old.get(bound, 0.0)) for bound, count in histogram_buckets(after, name)]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q*total.

    Returns None without observations; the highest finite bound when the rank falls in +Inf.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.99)) -> list[float | None]:
    """Exact quantiles (nearest rank) of a sample; None for an empty sample."""
    if not values:
        return [None for _ in qs]
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] for q in qs]
