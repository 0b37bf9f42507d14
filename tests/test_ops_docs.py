"""The operations docs and the files in ops/ agree: every alert's runbook anchor exists, the new sections are
there, and the README's test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> dict[str, int]:
    return {github_anchor(m.group(2)): len(m.group(1)) for m in re.finditer(r"^(#{1,6}) (.+)$", text, re.M)}


def test_every_runbook_url_points_at_a_heading_of_operations_md() -> None:
    text = OPERATIONS.read_text()
    anchors = headings(text)
    alerts_at = text.index("\n## Alerts\n")
    groups = yaml.safe_load((ROOT / "ops/prometheus/alerts.yml").read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "https://github.com/tornado-chat/tornado-chat/blob/main/docs/operations.md"
        assert anchors.get(anchor) == 3, f"{rule['alert']}: no ### heading for #{anchor}"
        # ...and that heading is in the Alerts section, with the alert in its summary table.
        assert text.index(f"\n### {rule['alert']}\n") > alerts_at
        assert f"| {rule['alert']} |" in text


def test_the_new_sections_come_after_the_existing_ones() -> None:
    text = OPERATIONS.read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections[-3:] == ["Deploy", "Alerts", "Status page"]


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    (command,) = [line for line in ci.splitlines() if line.startswith("apt-get update")]
    assert command in readme
    installed = command.split("apt-get install")[1].split("&&")[0].split()
    assert {"chromium", "prometheus", "nginx", "openssl", "systemd", "docker-compose"} <= set(installed)
    assert "| `ops/` |" in readme
