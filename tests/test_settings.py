"""Settings from flags and environment, and the command line that reads them."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tornado_chat import __version__
from tornado_chat.cli import load_or_create_secret
from tornado_chat.settings import OPTIONS, Settings, SettingsError, load_settings

from .support import ServerProcess, connect, http, login


@pytest.mark.unit
def test_defaults() -> None:
    settings = load_settings({}, {})
    assert settings == Settings()
    assert (settings.address, settings.port, settings.data_dir) == ("127.0.0.1", 8888, Path("chat-data"))
    assert (settings.max_message_bytes, settings.max_text_chars) == (65536, 4000)


@pytest.mark.unit
def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"TORNADO_CHAT_PORT": "9000", "TORNADO_CHAT_LOG_FORMAT": "json", "TORNADO_CHAT_PING_INTERVAL": "5"}
    settings = load_settings({"port": "9100"}, env)
    assert settings.port == 9100
    assert settings.log_format == "json"
    assert settings.ping_interval_s == 5.0


@pytest.mark.unit
def test_allowed_origins_parse_as_a_list() -> None:
    settings = load_settings({"allowed_origins": "https://a.example, http://b.example:8080/"}, {})
    assert settings.allowed_origins == ("https://a.example", "http://b.example:8080")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", "70000"),
        ("port", "eighty"),
        ("max_message_bytes", "10"),
        ("max_text_chars", "0"),
        ("log_format", "xml"),
        ("log_level", "loud"),
        ("allowed_origins", "not-an-origin"),
        ("address", "not an address"),
        ("ping_interval_s", "-1"),
        ("store", "postgres"),
    ],
)
def test_bad_values_raise_one_line_errors_naming_the_flag(field: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({field: value}, {})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--" + field.removesuffix("_s").replace("_", "-"))


@pytest.mark.unit
def test_every_option_has_a_flag_and_env_name() -> None:
    flags = [o.flag for o in OPTIONS]
    assert len(set(flags)) == len(flags)
    assert all(o.env.startswith("TORNADO_CHAT_") for o in OPTIONS)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tornado_chat", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.unit
def test_cli_version_and_help_document_every_option() -> None:
    assert run_cli("--version").stdout.strip() == f"tornado-chat {__version__}"
    help_text = run_cli("--help").stdout
    for option in OPTIONS:
        assert option.flag in help_text
        assert option.env in help_text


@pytest.mark.unit
def test_cli_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("--port", "99999", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--port" in result.stderr
    result = run_cli("--data-dir", str(tmp_path), env={"TORNADO_CHAT_LOG_FORMAT": "xml"})
    assert result.returncode == 2 and "TORNADO_CHAT_LOG_FORMAT" in result.stderr


@pytest.mark.unit
def test_cli_refuses_an_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("--data-dir", str(blocker / "sub"), "--port", "0")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0


@pytest.mark.unit
def test_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


@pytest.mark.integration
def test_the_command_serves_the_page_keeps_a_generated_secret_and_stops_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    server = ServerProcess("--data-dir", str(data_dir), secret=False).start()
    try:
        status, headers, body = http("GET", server.base_url)
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"tornado-chat" in body
        assert stat.S_IMODE((data_dir / "secret").stat().st_mode) == 0o600
        token = login(server.base_url, "alice")
        client = connect(server.base_url, "alice", token=token)
        client.close()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()
