"""Accepting connections without spinning when the process runs out of file descriptors.

Tornado's accept loop (``netutil.add_accept_handler``) lets every error but
``EAGAIN`` and ``ECONNABORTED`` escape. Out of descriptors, ``accept`` fails
with ``EMFILE`` while the listening socket stays readable, so the loop calls
it again at once: a core at full speed and a traceback per call. Here a
failed accept stops the watch on that socket for a backoff that doubles from
``BACKOFF_FIRST_S`` to ``BACKOFF_MAX_S``; the first failure of a burst is
logged, and the first success after it, with the count in between.
Connections waiting meanwhile stay in the kernel's backlog.

It also takes fewer connections per turn of the loop than Tornado does, so a
burst of hundreds of new connections is served over several turns, and the
connections already open (a chat's WebSockets) are not kept waiting behind it.

``GuardedHTTPServer`` is Tornado's ``HTTPServer`` with this accept loop.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable

import tornado.httpserver
import tornado.ioloop

log = logging.getLogger("tornado_chat.accept")

BACKOFF_FIRST_S = 0.01
BACKOFF_MAX_S = 1.0
# Connections taken per readable event before other work gets the loop. Tornado takes 128; fewer spread a
# storm of new connections over more loop turns, so those already open keep their turn.
ACCEPTS_PER_EVENT = 16


class AcceptGuard:
    """Accepts connections on one listening socket, backing off while ``accept`` fails."""

    def __init__(
        self,
        sock: socket.socket,
        callback: Callable[[socket.socket, object], None],
        failed: Callable[[], None],
    ) -> None:
        self.sock = sock
        self.callback = callback
        self.failed = failed
        self.loop = tornado.ioloop.IOLoop.current()
        self.backoff_s = 0.0
        self.failures = 0
        self.failing_since = 0.0
        self.stopped = False
        self._timer: object | None = None
        self.loop.add_handler(sock, self._readable, tornado.ioloop.IOLoop.READ)

    def _readable(self, sock: socket.socket, events: int) -> None:
        for _ in range(ACCEPTS_PER_EVENT):
            if self.stopped:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue  # closed while it waited in the backlog
            except OSError as exc:
                self._pause(exc)
                return
            if self.failures:
                log.warning(
                    "accepting connections again after %d failed accepts in %.1fs",
                    self.failures,
                    time.monotonic() - self.failing_since,
                )
                self.failures = 0
                self.backoff_s = 0.0
            self.callback(connection, address)

    def _pause(self, exc: OSError) -> None:
        self.failed()
        if not self.failures:
            self.failing_since = time.monotonic()
            log.error(
                "cannot accept connections: %s; retrying with backoff up to %gs (file descriptor limit: ulimit -n,"
                " LimitNOFILE)",
                exc.strerror or exc,
                BACKOFF_MAX_S,
            )
        self.failures += 1
        self.backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, self.backoff_s * 2))
        self.loop.remove_handler(self.sock)
        self._timer = self.loop.call_later(self.backoff_s, self._resume)

    def _resume(self) -> None:
        self._timer = None
        if not self.stopped:
            self.loop.add_handler(self.sock, self._readable, tornado.ioloop.IOLoop.READ)

    def stop(self) -> None:
        """Stop accepting (the socket is the caller's to close)."""
        if self.stopped:
            return
        self.stopped = True
        if self._timer is not None:
            self.loop.remove_timeout(self._timer)
            self._timer = None
        else:
            self.loop.remove_handler(self.sock)


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """``HTTPServer`` whose listening sockets are served by ``AcceptGuard`` (``add_guarded_sockets``)."""

    def add_guarded_sockets(self, sockets: Iterable[socket.socket], failed: Callable[[], None]) -> None:
        """Accept on ``sockets``, like ``add_sockets``; ``failed`` is called for each failed accept."""
        for sock in sockets:
            guard = AcceptGuard(sock, self._handle_connection, failed)
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = guard.stop
