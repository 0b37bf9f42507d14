"""The browser client's files, read once at start, with cache-busting URLs.

Every file under ``static/`` gets a version: a hash of its content as served.
The page refers to ``static/NAME?v=VERSION``; such URLs are cached by browsers
for a year, since a change to the file changes the URL. JavaScript modules
import each other by relative path, so those import specifiers are rewritten
to versioned URLs too, and a module's version covers the versions of what it
imports: changing one module changes the URL of every module that depends on
it, up to the page.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

_HTML_REF = re.compile(r'(?P<attr>\b(?:src|href))="static/(?P<name>[^"?#]+)"')
_JS_IMPORT = re.compile(r"""(?P<head>\b(?:from|import)\s*\(?\s*)(?P<quote>["'])\./(?P<name>[^"'?#]+)(?P=quote)""")
_TEXT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    content: bytes
    version: str
    content_type: str


class Assets:
    """All files of one static directory, served from memory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        raw = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and not path.name.startswith(".")
        }
        self.files: dict[str, Asset] = {}
        for name in raw:
            self._build(name, raw, visiting=set())
        self._page = self._render_page(raw.get("index.html", b""))

    def _build(self, name: str, raw: dict[str, bytes], visiting: set[str]) -> Asset | None:
        if name in self.files:
            return self.files[name]
        if name not in raw or name in visiting:
            return None
        visiting.add(name)
        content = raw[name]
        if name.endswith(".js"):
            base = name.rpartition("/")[0]

            def versioned(match: re.Match[str]) -> str:
                target = f"{base}/{match['name']}" if base else match["name"]
                dependency = self._build(target, raw, visiting)
                suffix = f"?v={dependency.version}" if dependency is not None else ""
                return f"{match['head']}{match['quote']}./{match['name']}{suffix}{match['quote']}"

            content = _JS_IMPORT.sub(versioned, content.decode("utf-8")).encode("utf-8")
        suffix = Path(name).suffix
        content_type = _TEXT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        asset = Asset(content, hashlib.sha256(content).hexdigest()[:16], content_type)
        self.files[name] = asset
        visiting.discard(name)
        return asset

    def url(self, name: str) -> str:
        """The relative, versioned URL of a file (relative so the page works under any path prefix)."""
        asset = self.files.get(name)
        return f"static/{name}?v={asset.version}" if asset is not None else f"static/{name}"

    def _render_page(self, html: bytes) -> bytes:
        def versioned(match: re.Match[str]) -> str:
            return f'{match["attr"]}="{self.url(match["name"])}"'

        return _HTML_REF.sub(versioned, html.decode("utf-8")).encode("utf-8")

    @property
    def page(self) -> bytes:
        """``index.html`` with every reference into ``static/`` versioned."""
        return self._page
