"""ops/systemd/tornado-chat.service, checked by systemd's own tools: `systemd-analyze verify` (syntax, known
directives, an executable ExecStart) and `systemd-analyze security --offline` (the hardening it adds up to)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tornado_chat.settings import Settings

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "ops" / "systemd" / "tornado-chat.service"
SHIPPED_EXEC = "/opt/tornado-chat/bin/tornado-chat"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def parse_unit(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, by key, in order (keys such as SystemCallFilter may repeat)."""
    values: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values[key.strip()].append(value.strip())
    return values


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|ms)?", value)
    assert match is not None, value
    return float(match.group(1)) * {"s": 1, None: 1, "min": 60, "ms": 0.001}[match.group(2)]


@pytest.fixture
def rendered_unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at this environment's console script (verify checks that it
    exists and is executable); nothing else changed."""
    script = Path(sys.executable).parent / "tornado-chat"
    if not os.access(script, os.X_OK):  # running from a checkout with PYTHONPATH: a stand-in that execs it
        script = tmp_path / "tornado-chat"
        script.write_text(f'#!/bin/sh\nexec {sys.executable} -m tornado_chat "$@"\n')
        script.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(SHIPPED_EXEC) == 1
    unit = tmp_path / "tornado-chat.service"
    unit.write_text(text.replace(SHIPPED_EXEC, str(script)))
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if SYSTEMD_ANALYZE is None:
        message = "systemd-analyze is not installed (Debian package systemd; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(rendered_unit: Path) -> None:
    result = analyze("verify", str(rendered_unit))
    # verify exits 0 on unknown keys and only prints them: any output is a finding.
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", (
        result.stdout + result.stderr
    )


def test_systemd_analyze_security_rates_the_unit_well_hardened(rendered_unit: Path) -> None:
    result = analyze("security", "--offline=yes", "--no-pager", str(rendered_unit))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match is not None, result.stdout
    # 0.0 is a fully sandboxed unit, 10.0 none at all; a network service that must open sockets and write
    # its state cannot reach 0. At most 2.0 ("OK"); the remaining findings are the network it serves on.
    assert float(match.group(1)) <= 2.0, result.stdout


def test_the_unit_stops_gracefully_and_runs_confined() -> None:
    unit = parse_unit(UNIT.read_text())
    assert seconds(unit["TimeoutStopSec"][0]) > Settings().shutdown_timeout_s
    assert unit["KillSignal"] == ["SIGTERM"] and unit["Restart"] == ["on-failure"]
    for key, value in {
        "DynamicUser": "yes",
        "StateDirectory": "tornado-chat",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert unit[key] == [value], key
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["SystemCallFilter"][0] == "@system-service"
    (exec_start,) = unit["ExecStart"]
    assert exec_start.startswith(SHIPPED_EXEC + " ") and "--data-dir ${STATE_DIRECTORY}" in exec_start
