"""The ops listener: Prometheus metrics, health probes and the status page, on their own address and port.

Kept off the chat listener so that chat users cannot read metrics or probe
health by default; ``--ops-address``/``--ops-port`` choose where it listens.
It answers only requests whose ``Host`` is a loopback address, its own
address, or one of ``--ops-allowed-hosts``: a page on another site that
rebinds its DNS name to this address still sends its own name, so it cannot
read the status page's user names and addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Protocol

import tornado.web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from . import server_frames
from .httpbase import PathOnlyLogs
from .status import CONTENT_SECURITY_POLICY, StatusPage, StatusSource, load_assets

Report = tuple[bool, dict[str, object]]


class OpsSource(StatusSource, Protocol):
    """What the ops listener reads of a running server."""

    @property
    def registry(self) -> CollectorRegistry: ...

    def health(self) -> Report:
        """Liveness: (healthy, body)."""
        ...

    def count_http_refusal(self, code: str) -> None:
        """Count a refused request (``bad_host`` here) in ``chat_http_refused_total``."""
        ...

    def readiness(self) -> Report:
        """Readiness: (ready, body)."""
        ...


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """Whether a ``Host`` header (``name``, ``name:port``, ``[v6]:port``) names loopback or an allowed host."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host in allowed:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(ops_address: str, configured: Iterable[str]) -> frozenset[str]:
    """The host names the ops listener answers to besides loopback: ``localhost``, its address, the configured."""
    hosts = {"localhost", *configured}
    try:
        unspecified = ipaddress.ip_address(ops_address).is_unspecified  # 0.0.0.0 names no host
    except ValueError:
        unspecified = not ops_address
    if not unspecified:
        hosts.add(ops_address.lower())
    return frozenset(hosts)


class OpsHandler(PathOnlyLogs):
    # Probes are polled every few seconds: refusals (404, 503) get no log line each (PathOnlyLogs).
    server: OpsSource

    def initialize(self, server: OpsSource) -> None:
        self.server = server

    def prepare(self) -> None:
        if not host_allowed(self.request.host, self.settings["ops_hosts"]):
            self.server.count_http_refusal("bad_host")
            raise tornado.web.HTTPError(403, reason="Bad Host")

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_json(self, ok: bool, body: dict[str, object]) -> None:
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "application/json")
        self.finish(server_frames.encode(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(server_frames.encode({"error": self._reason.lower().replace(" ", "_"), "message": self._reason}))


class MetricsHandler(OpsHandler):
    """``GET /metrics``: Prometheus text format, or OpenMetrics when the scraper asks for it."""

    def get(self) -> None:
        encoder, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(encoder(self.server.registry))


class HealthHandler(OpsHandler):
    """``GET /healthz``: 200 while the heartbeat ticks and the loop keeps up, else 503 with the reasons."""

    def get(self) -> None:
        self.write_json(*self.server.health())


class ReadyHandler(OpsHandler):
    """``GET /readyz``: 200 while the server accepts chat traffic, else 503 (starting, stopping, store down)."""

    def get(self) -> None:
        self.write_json(*self.server.readiness())


class StatusJsonHandler(OpsHandler):
    """``GET /status.json``: counts, rates and the top connections (see ``tornado_chat.status``)."""

    def initialize(self, server: OpsSource, page: StatusPage) -> None:  # type: ignore[override]
        super().initialize(server)
        self.page = page

    def get(self) -> None:
        self.write_json(True, self.page.snapshot())


class StatusAssetHandler(OpsHandler):
    """``GET /status`` and its script and style sheet, from the package; under a strict CSP."""

    def initialize(self, server: OpsSource, body: bytes, content_type: str) -> None:  # type: ignore[override]
        super().initialize(server)
        self.body = body
        self.content_type = content_type

    def get(self) -> None:
        self.set_header("Content-Type", self.content_type)
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(self.body)

    def head(self) -> None:
        self.get()


class OpsNotFoundHandler(OpsHandler):
    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404)


def make_ops_app(server: OpsSource, hosts: frozenset[str]) -> tornado.web.Application:
    """The ops listener's application; ``hosts`` are the names it answers to besides loopback addresses."""
    args = {"server": server}
    status_page = StatusPage(server)
    assets = [
        (path.replace(".", r"\."), StatusAssetHandler, {"server": server, "body": body, "content_type": kind})
        for path, (body, kind) in load_assets().items()
    ]
    return tornado.web.Application(
        [
            (r"/metrics", MetricsHandler, args),
            (r"/healthz", HealthHandler, args),
            (r"/readyz", ReadyHandler, args),
            (r"/status\.json", StatusJsonHandler, {"server": server, "page": status_page}),
            *assets,
        ],
        default_handler_class=OpsNotFoundHandler,
        default_handler_args=args,
        log_function=lambda handler: None,
        ops_hosts=hosts,
    )
