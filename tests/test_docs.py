"""The documentation matches the code: option table, metric names, error codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tornado_chat.protocol import CLIENT_FRAME_TYPES, ErrorCode
from tornado_chat.settings import option_table

from .support import ServerThread

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.unit
def test_the_option_table_in_operations_md_is_the_one_the_code_generates() -> None:
    text = (DOCS / "operations.md").read_text()
    match = re.search(r"<!-- options:start -->\n(.*?)\n<!-- options:end -->", text, re.S)
    assert match is not None
    assert match.group(1) == option_table(), "regenerate the table with tornado_chat.settings.option_table()"


@pytest.mark.integration
def test_every_exported_chat_metric_is_documented(server: ServerThread) -> None:
    text = (DOCS / "operations.md").read_text()
    registry = server.chat.registry
    names = {metric.name for metric in registry.collect() if metric.name.startswith("chat_")}
    assert names, "the server exports chat metrics"
    for name in names:
        documented = f"`{name}`" in text or f"`{name}_total`" in text
        assert documented, f"{name} is not in docs/operations.md"
    # And nothing is documented that the server does not export.
    listed = set(re.findall(r"^\| `(chat_[a-z_]+)` \|", text, re.M))
    exported = names | {f"{n}_total" for n in names}
    assert listed <= exported, listed - exported


@pytest.mark.unit
def test_every_error_code_and_client_frame_is_documented() -> None:
    text = (DOCS / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"| `{code.value}` |" in text, code
    for frame_type in CLIENT_FRAME_TYPES:
        assert f"### {frame_type}" in text, frame_type


@pytest.mark.integration
def test_metrics_never_touch_the_global_registry(server: ServerThread) -> None:
    # A server is running in this process (the fixture); its metrics must all be on its own registry.
    assert not any(family.name.startswith("chat_") for family in REGISTRY.collect())
    own = {family.name for family in server.chat.registry.collect()}
    assert "chat_connections" in own and "chat_heartbeat_reaped" in own
