"""ops/docker: no Docker engine runs here, so the image is never built. What can be proven without one is:
the compose file is valid for Compose (`docker-compose config`, which needs no engine), it mounts the
shipped Prometheus files, and the image's HEALTHCHECK command works against a live server, with nothing
but the standard library."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .support import ServerThread, http, wait_until

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "ops" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yml"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def healthcheck_command() -> list[str]:
    (arguments,) = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    _, _, exec_form = arguments.partition(" CMD ")
    command: list[str] = json.loads(exec_form)
    return command


def test_compose_file_is_valid_for_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        message = "docker-compose is not installed (Debian package docker-compose; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    prometheus = resolved["services"]["prometheus"]
    mounted = {volume.split(":")[0] for volume in prometheus["volumes"]}
    assert {str(ROOT / "ops/prometheus/prometheus.yml"), str(ROOT / "ops/prometheus/alerts.yml")} <= mounted
    # Prometheus shares the chat container's network, so the shipped scrape target 127.0.0.1:8889 holds.
    assert prometheus["network_mode"] == "service:chat"
    chat = resolved["services"]["chat"]
    assert Path(chat["build"]["context"]) == ROOT and chat["build"]["dockerfile"] == "ops/docker/Dockerfile"
    # The ops port is never published; what is published is on the host's loopback only.
    assert all(port.startswith("127.0.0.1:") for port in chat["ports"])
    assert not any(":8889" in port for port in chat["ports"])


def test_dockerfile_is_minimal_non_root_and_declares_what_it_serves() -> None:
    steps = instructions()
    words = [word for word, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    user_at = words.index("USER")
    assert steps[user_at][1] not in ("root", "0") and user_at < words.index("ENTRYPOINT")
    assert ("EXPOSE", "8888 8889") in steps and ("VOLUME", '["/data"]') in steps
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["tornado-chat"]
    for word, rest in steps:
        if word == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source  # paths are relative to the repository root
    assert DOCKERFILE.read_text().splitlines()[2].startswith("# NOTE: no Docker engine")
    assert COMPOSE.read_text().splitlines()[2].startswith("# NOTE: no Docker engine")


def test_the_healthcheck_command_passes_on_a_healthy_server_and_fails_on_a_stalled_one(
    server: ServerThread,
) -> None:
    python, *args = healthcheck_command()
    assert python == "python" and args[0] == "-c"
    code = args[1]
    assert "127.0.0.1:8889/healthz" in code
    # The standard library only: the slim image has no curl or wget.
    assert re.findall(r"\bimport ([\w., ]+);", code) == ["urllib.request, sys"]
    command = [sys.executable, "-c", code.replace("127.0.0.1:8889", f"127.0.0.1:{server.chat.ops_port}")]
    healthy = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    # Stop the heartbeat timer: /healthz turns 503 after three missed ticks, and the check fails.
    server.call(server.chat.liveness.timer.stop)
    wait_until(lambda: http("GET", server.ops_url + "healthz")[0] == 503, "/healthz to fail")
    unhealthy = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert unhealthy.returncode != 0
