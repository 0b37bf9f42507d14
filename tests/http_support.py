"""Real HTTP clients of the HTTP transports (``GET /events``, ``GET /poll``, ``POST /api/frames``) for tests.

``EventStreamClient`` reads an event stream on a thread of its own; ``PollClient``
long-polls on one. Both collect every frame in arrival order and answer the same
waits as ``support.Client`` (``expect``, ``frames_until``, ``barrier``), so a test
reads the same whatever carries the session. ``send`` POSTs frames and files
their replies (acks and errors) with the rest. Nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.parse
from typing import Any

from .support import WAIT_S, ChatCalls
from .support import http as request


def _split(base_url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


class HttpClient(ChatCalls):
    """What an event-stream client and a long-poll client share: the frames, the waits, the POSTs.

    ``barrier`` is a ping whose pong comes down the stream: every frame written before it has arrived.
    """

    def __init__(self, base_url: str, username: str, token: str) -> None:
        self.base_url = base_url
        self.username = username
        self.token = token
        self.frames: list[dict[str, Any]] = []
        # Every frame in arrival order, never consumed (for exactly-once checks).
        self.seen: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.closed: dict[str, Any] | None = None  # the close notice, once the server ends the session
        self.ended = False
        self.welcome: dict[str, Any] = {}
        self.session = ""
        self._next_id = 0

    # ------------------------------------------------------------ frames in

    def _arrived(self, frame: dict[str, Any]) -> None:
        with self.changed:
            self.frames.append(frame)
            self.seen.append(frame)
            self.changed.notify_all()

    def _closed(self, notice: dict[str, Any] | None) -> None:
        with self.changed:
            self.closed = notice
            self.ended = True
            self.changed.notify_all()

    def expect(self, kind: str, timeout: float = WAIT_S, **fields: Any) -> dict[str, Any]:
        """The first frame of type ``kind`` whose fields equal ``fields`` (taken out; others stay)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for index, frame in enumerate(self.frames):
                    if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                        return self.frames.pop(index)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.username}: no {kind} frame with {fields}; have {self.frames}")
                self.changed.wait(remaining)

    def wait_closed(self, timeout: float = WAIT_S) -> dict[str, Any] | None:
        """The close notice, once the server has ended the session (None when the stream just ended)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.username}: the session did not end")
                self.changed.wait(remaining)
            return self.closed

    def texts(self) -> list[str]:
        """Texts of every message seen, in arrival order."""
        with self.changed:
            return [f["text"] for f in self.seen if f.get("type") == "message"]

    # ------------------------------------------------------------ frames out

    def new_id(self) -> str:
        self._next_id += 1
        return f"{self.username}-{self._next_id}"

    def post(self, frames: list[Any], *, token: str | None = None, session: str | None = None) -> Any:
        """``POST /api/frames``; returns (status, body). Replies also join the frames, in order."""
        query = urllib.parse.urlencode({"session": session if session is not None else self.session})
        status, _, body = request(
            "POST",
            f"{self.base_url}api/frames?{query}",
            raw=json.dumps(frames).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token or self.token}"},
        )
        if status == 200:
            for reply in body:
                self._arrived(reply)
        return status, body

    def send(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        status, body = self.post([frame])
        assert status == 200, body
        return list(body)

    def close(self) -> None:
        raise NotImplementedError


class EventStreamClient(HttpClient):
    """``GET /events``, read line by line on a thread; ``events`` keeps each event's fields as sent."""

    def __init__(
        self,
        base_url: str,
        username: str,
        token: str,
        *,
        headers: dict[str, str] | None = None,
        since: str | None = None,
    ) -> None:
        super().__init__(base_url, username, token)
        host, port = _split(base_url)
        self.connection = http.client.HTTPConnection(host, port, timeout=WAIT_S * 3)
        query = urllib.parse.urlencode({**({"since": since} if since is not None else {}), "token": token})
        self.connection.request("GET", f"/events?{query}", headers=headers or {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.events: list[dict[str, str]] = []
        self.comments = 0
        if self.status != 200:
            self.error = json.loads(self.response.read())
            self.connection.close()
            return
        threading.Thread(target=self._read, daemon=True).start()
        self.welcome = self.expect("welcome")
        self.session = self.welcome["session"]

    def _read(self) -> None:
        event: dict[str, str] = {}
        notice: dict[str, Any] | None = None
        # Closing the connection under the reader ends it with whatever http.client raises then.
        with contextlib.suppress(OSError, ValueError, AttributeError, http.client.HTTPException):
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    with self.changed:
                        self.comments += 1
                        self.changed.notify_all()
                    continue
                if line:
                    name, _, value = line.partition(":")
                    event[name] = value[1:] if value.startswith(" ") else value
                    continue
                if not event:
                    continue
                self.events.append(event)
                if event.get("event") == "close":
                    notice = json.loads(event["data"])
                elif "data" in event:
                    self._arrived(json.loads(event["data"]))
                event = {}
        self._closed(notice)

    def event_of(self, **fields: Any) -> dict[str, str]:
        """The raw event whose data has these fields."""
        for event in self.events:
            if "data" in event and all(json.loads(event["data"]).get(k) == v for k, v in fields.items()):
                return event
        raise AssertionError(f"no event with {fields}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            sock = self.connection.sock
            if sock is not None:
                sock.shutdown(2)
        self.connection.close()


class PollClient(HttpClient):
    """``GET /poll`` in a loop on a thread, acknowledging each answer with its cursor in the next poll."""

    def __init__(
        self, base_url: str, username: str, token: str, *, wait: float = 5.0, since: str | None = None
    ) -> None:
        super().__init__(base_url, username, token)
        self.wait = wait
        self.cursor = 0
        self.polls = 0
        self.stopped = threading.Event()
        query = urllib.parse.urlencode({**({"since": since} if since is not None else {}), "token": token})
        self.status, _, answer = request("GET", f"{base_url}poll?{query}")
        if self.status != 200:
            self.error = answer
            return
        self.session = answer["session"]
        self._take(answer)
        self.welcome = self.expect("welcome")
        threading.Thread(target=self._loop, daemon=True).start()

    def _take(self, answer: dict[str, Any]) -> None:
        self.cursor = answer["cursor"]
        for frame in answer["frames"]:
            self._arrived(frame)
        if "close" in answer:
            self._closed(answer["close"])
            self.stopped.set()

    def poll_once(self, cursor: int | None = None, wait: float | None = None) -> tuple[int, Any]:
        query = urllib.parse.urlencode(
            {
                "session": self.session,
                "cursor": self.cursor if cursor is None else cursor,
                "wait": self.wait if wait is None else wait,
            }
        )
        status, _, answer = request(
            "GET", f"{self.base_url}poll?{query}", headers={"Authorization": f"Bearer {self.token}"}
        )
        return status, answer

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                status, answer = self.poll_once()
            except OSError:
                continue
            if self.stopped.is_set():
                return
            self.polls += 1
            if status != 200:
                self._closed(None)
                return
            self._take(answer)

    def stop_polling(self) -> None:
        """Stop coming back (the session is left to the heartbeat)."""
        self.stopped.set()

    def close(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            request(
                "DELETE",
                f"{self.base_url}poll?session={self.session}",
                headers={"Authorization": f"Bearer {self.token}"},
            )
