"""The package's shape, checked from its source: no import circle, small modules, typed seams, no socket hacks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "tornado_chat"
# "No module over ~400 lines": a little room for a docstring, none for a second responsibility.
MAX_MODULE_LINES = 420
# The seam between the core and the transports: nothing there may be typed Any.
TYPED_SEAMS = ("session.py", "heartbeat.py", "hub.py", "outgoing.py", "admission.py", "http_transport.py")


def modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Package modules this one imports, ``TYPE_CHECKING`` blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tornado_chat."):
            found.add((node.module or "").split(".")[1])
    return found & set(modules())


def test_no_import_circle_even_for_type_checking() -> None:
    graph = {name: imports_of(path) for name, path in modules().items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import circle: " + " -> ".join([*visiting[visiting.index(name) :], name])
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_no_module_is_over_about_four_hundred_lines() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_sessions_are_served_by_websockethandler_not_by_a_socket_layer_of_our_own() -> None:
    source = {name: path.read_text() for name, path in modules().items()}
    assert not [n for n, text in source.items() if re.search(r"\bdetach\(\)|add_reader|add_writer|\.dup\(\)", text)]
    assert "class ChatSocketHandler(tornado.websocket.WebSocketHandler" in source["websocket"]
    assert "websocket_ping_interval" not in source["server"]  # the heartbeat is ours


@pytest.mark.parametrize("name", TYPED_SEAMS)
def test_no_any_at_the_session_seam(name: str) -> None:
    tree = ast.parse((PACKAGE / name).read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "Any" not in names | attributes
