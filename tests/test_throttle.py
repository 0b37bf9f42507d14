"""The resource limits as pure code: password throttles, one-at-a-time requests, room caps and pages, names."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from tornado_chat.inflight import Busy, InFlight
from tornado_chat.names import name_collisions, name_key
from tornado_chat.ops import allowed_hosts, host_allowed
from tornado_chat.protocol import ErrorCode, ListRooms, ProtocolError, parse_client_frame
from tornado_chat.room_limits import RoomLimits
from tornado_chat.room_pages import RoomIndex, room_page
from tornado_chat.session import User
from tornado_chat.throttle import (
    ADDRESS_IN_FLIGHT,
    LOGIN,
    NAME_FREE_FAILURES,
    NAME_IN_FLIGHT,
    REGISTER,
    HashPool,
    RecentEvents,
    Throttle,
    Throttled,
)

from .support import run_async

pytestmark = pytest.mark.unit


def refused(throttle: Throttle, kind: str, address: str, key: str | None, now: float) -> Throttled:
    with pytest.raises(Throttled) as caught:
        throttle.begin(kind, address, key, now)
    return caught.value


# ---------------------------------------------------------------- password attempts


def test_attempts_in_flight_count_as_failures_before_any_hash() -> None:
    throttle = Throttle(attempts_per_min=3, registrations_per_hour=10, max_delay_s=10.0)
    # Two at once from one address (the in-flight cap), each counted the moment it starts.
    first = throttle.begin(LOGIN, "a", "x", 0.0)
    second = throttle.begin(LOGIN, "a", "y", 0.0)
    assert refused(throttle, LOGIN, "a", "z", 0.0).retry_after_s == 1.0  # a third waits for the two
    throttle.end(first, succeeded=False)
    throttle.end(second, succeeded=False)
    throttle.end(throttle.begin(LOGIN, "a", "z", 1.0), succeeded=False)
    # Three failures in the minute: the fourth is refused until the first is a minute old.
    assert refused(throttle, LOGIN, "a", "w", 30.0).retry_after_s == pytest.approx(30.0)
    assert refused(throttle, LOGIN, "a", "w", 30.0).status == 429
    throttle.end(throttle.begin(LOGIN, "a", "w", 60.5), succeeded=False)
    # Other addresses are not concerned.
    throttle.begin(LOGIN, "b", "x", 30.0)


def test_a_success_takes_back_what_its_attempt_counted() -> None:
    throttle = Throttle(attempts_per_min=2, registrations_per_hour=10, max_delay_s=10.0)
    for now in range(10):
        throttle.end(throttle.begin(LOGIN, "a", "alice", float(now)), succeeded=True)
    assert throttle.address_failures.count("a", 10.0) == 0
    assert throttle.address_in_flight == {} and throttle.name_in_flight == {}


def test_failures_for_a_name_slow_guessers_up_to_the_cap_but_never_its_owner() -> None:
    throttle = Throttle(attempts_per_min=100, registrations_per_hour=10, max_delay_s=10.0)
    delays = []
    for i in range(NAME_FREE_FAILURES + 6):
        address = f"10.0.0.{i % 3}"  # three guessers, each failing over and over
        attempt = throttle.begin(LOGIN, address, "victim", float(i))
        delays.append(attempt.delay_s)
        throttle.end(attempt, succeeded=False)
    # The first attempt of each address was clean; every later one waits longer, up to the cap.
    assert delays == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # The owner, from an address without failures, is not delayed (nor refused) for the name.
    owner = throttle.begin(LOGIN, "192.0.2.1", "victim", 20.0)
    assert owner.delay_s == 0.0
    throttle.end(owner, succeeded=True)
    assert throttle.name_delay("victim", 21.0) == 0.0  # the owner's success clears the name


def test_attempts_on_a_name_in_flight_are_capped_for_addresses_that_failed_lately() -> None:
    throttle = Throttle(attempts_per_min=100, registrations_per_hour=10, max_delay_s=10.0)
    for i in range(NAME_IN_FLIGHT):
        throttle.end(throttle.begin(LOGIN, f"bad{i}", "other", 0.0), succeeded=False)  # each has failed once
    held = [throttle.begin(LOGIN, f"bad{i}", "victim", 1.0) for i in range(NAME_IN_FLIGHT)]
    throttle.end(throttle.begin(LOGIN, "bad9", "other", 1.0), succeeded=False)
    assert refused(throttle, LOGIN, "bad9", "victim", 1.0).code == "too_many_attempts"
    clean = throttle.begin(LOGIN, "owner", "victim", 1.0)  # no recent failure: never refused for the name
    for attempt in [*held, clean]:
        throttle.end(attempt, succeeded=False)
    assert ADDRESS_IN_FLIGHT >= 1 and throttle.name_in_flight == {}


def test_registrations_are_limited_per_address_per_hour() -> None:
    throttle = Throttle(attempts_per_min=100, registrations_per_hour=3, max_delay_s=10.0)
    for now in (0.0, 1.0, 2.0):
        throttle.end(throttle.begin(REGISTER, "a", None, now), succeeded=True)
    assert refused(throttle, REGISTER, "a", None, 3.0).retry_after_s == pytest.approx(3597.0)
    throttle.end(throttle.begin(REGISTER, "b", None, 3.0), succeeded=True)
    throttle.end(throttle.begin(LOGIN, "a", "x", 3.0), succeeded=True)  # logins are not registrations
    throttle.end(throttle.begin(REGISTER, "a", None, 3600.5), succeeded=True)


def test_probing_a_taken_name_counts_as_a_failure() -> None:
    throttle = Throttle(attempts_per_min=2, registrations_per_hour=10, max_delay_s=10.0)
    throttle.probe("a", 0.0)
    throttle.probe("a", 0.0)
    with pytest.raises(Throttled):
        throttle.probe("a", 0.0)


def test_recent_events_forget_old_events_and_old_keys() -> None:
    events = RecentEvents(window_s=10.0, cap=3, max_keys=100)
    for i in range(1000):
        events.add(f"k{i}", float(i))
    assert len(events) == 100
    for _ in range(5):
        events.add("k999", 1000.0)
    assert events.count("k999", 1000.0) == 3  # at most cap kept per key
    assert events.count("k999", 1011.0) == 0 and len(events) == 99


def test_the_hash_pool_refuses_work_past_its_queue() -> None:
    release = threading.Event()

    async def scenario() -> list[object]:
        pool = HashPool(max_queued=3, threads=1)
        running = [asyncio.ensure_future(pool.run(lambda: release.wait(5))) for _ in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(Throttled) as full:
            await pool.run(lambda: True)
        assert full.value.status == 503 and full.value.code == "busy"
        release.set()
        results: list[object] = list(await asyncio.gather(*running))
        results.append(await pool.run(lambda: "after"))
        pool.shutdown()
        return results

    assert run_async(scenario) == [True, True, True, "after"]


# ---------------------------------------------------------------- one request at a time


def test_in_flight_runs_one_per_key_queues_a_few_and_refuses_the_rest() -> None:
    async def scenario() -> None:
        gate = InFlight(waiting=1)
        await gate.enter("k")
        second = asyncio.ensure_future(gate.enter("k"))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await gate.enter("k")
        assert not gate.try_enter("k") and gate.try_enter("other")
        assert not second.done()  # it waits for the first to leave
        gate.leave("k")
        await second
        assert not gate.try_enter("k")  # the turn passed to the second: "k" is running again
        gate.leave("k")
        gate.leave("other")
        assert len(gate) == 0
        # A waiter cancelled after its turn came passes the turn on.
        await gate.enter("k")
        third = asyncio.ensure_future(gate.enter("k"))
        await asyncio.sleep(0)
        gate.leave("k")
        third.cancel()
        with pytest.raises(asyncio.CancelledError):
            await third
        assert gate.try_enter("k")

    run_async(scenario)


# ---------------------------------------------------------------- rooms


def test_room_caps_refuse_joins_past_membership_and_creation_limits() -> None:
    limits = RoomLimits(max_rooms_per_user=3, creations_per_hour=2)
    alice = User("alice")
    existing = {"old1", "old2", "old3"}
    for name in ("new1", "new2"):
        limits.admit_join(existing, alice, name, 0.0)
    with pytest.raises(ProtocolError) as created:
        limits.admit_join(existing, alice, "new3", 1.0)
    assert created.value.code == ErrorCode.TOO_MANY_ROOMS
    limits.admit_join(existing, alice, "old1", 1.0)  # joining an existing room creates nothing
    alice.rooms.update({"old1", "old2", "old3"})
    with pytest.raises(ProtocolError) as member:
        limits.admit_join(existing, alice, "new4", 3700.0)
    assert member.value.code == ErrorCode.TOO_MANY_ROOMS and "leave one" in member.value.message
    limits.admit_join(existing, alice, "old2", 3700.0)  # already a member: nothing to check


def test_the_room_index_pages_in_name_order() -> None:
    index = RoomIndex()
    for name in ("c", "a", "e", "b", "d", "a"):
        index.add(name)
    assert index.page(None, 2) == (["a", "b"], "b")
    assert index.page("b", 2) == (["c", "d"], "d")
    assert index.page("d", 2) == (["e"], None)
    assert index.page("bb", 10) == (["c", "d", "e"], None)
    index.remove("c")
    index.remove("zz")
    assert index.page(None, 10) == (["a", "b", "d", "e"], None)


def test_a_rooms_frame_asks_for_a_page_and_the_answer_says_where_the_next_starts() -> None:
    assert parse_client_frame('{"type": "rooms"}', 100) == ListRooms(None, 100)
    assert parse_client_frame('{"type": "rooms", "after": "lobby", "limit": 5}', 100) == ListRooms("lobby", 5)
    for bad in ('{"type": "rooms", "limit": 0}', '{"type": "rooms", "limit": 501}', '{"type": "rooms", "after": 5}'):
        with pytest.raises(ProtocolError):
            parse_client_frame(bad, 100)

    class Room:
        def __init__(self, members: set[str], online: int) -> None:
            self.members = members
            self.online = online
            self.private = False
            self.topic = ""

    index = RoomIndex()
    rooms = {name: Room({"u1", "u2"}, 1) for name in ("a", "b", "c")}
    for name in rooms:
        index.add(name)
    frame = json.loads(room_page(index, (), rooms, {"b"}, "a", 1).frame())
    assert frame == {
        "type": "rooms",
        "after": "a",
        "rooms": [{"room": "b", "members": 2, "online": 1, "member": True, "private": False, "topic": ""}],
        "next": "b",
        "total": 3,
    }


# ---------------------------------------------------------------- names and hosts


def test_names_are_one_account_whatever_their_case() -> None:
    assert name_key("Alice") == name_key("ALICE") == name_key("alice") == "alice"
    assert name_key("Guest-Bob").startswith("guest-")
    assert name_collisions(["alice", "Bob", "ALICE", "carol", "bob", "Alice"]) == [
        ["ALICE", "Alice", "alice"],
        ["Bob", "bob"],
    ]
    assert name_collisions(["a", "b"]) == []


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8889", True),
        ("127.0.0.7", True),
        ("[::1]:8889", True),
        ("localhost:8889", True),
        ("LOCALHOST", True),
        ("metrics.internal:8889", True),
        ("10.0.0.5:8889", True),
        ("evil.example:8889", False),
        ("10.0.0.6:8889", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_the_ops_listener_answers_loopback_and_configured_hosts_only(host: str, ok: bool) -> None:
    hosts = allowed_hosts("10.0.0.5", ("metrics.internal",))
    assert host_allowed(host, hosts) is ok
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0", ())
