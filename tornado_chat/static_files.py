"""Where the browser client's files are, in a source checkout or an installed package."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

# setup.cfg installs static/ under <prefix>/share/tornado-chat/static.
_INSTALLED_SUBDIR = Path("share", "tornado-chat", "static")


def static_dir() -> Path:
    """The directory holding ``index.html``: the checkout's ``static/`` first, then the installed copy."""
    candidates = [
        Path(__file__).resolve().parent.parent / "static",
        Path(sysconfig.get_path("data")) / _INSTALLED_SUBDIR,
        Path(sys.prefix) / _INSTALLED_SUBDIR,
        Path(sysconfig.get_path("data", "posix_user")) / _INSTALLED_SUBDIR,
    ]
    for candidate in candidates:
        if (candidate / "index.html").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"the chat page (static/index.html) was not found; looked in {looked}")
