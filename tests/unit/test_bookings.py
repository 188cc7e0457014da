"""Confirm, CancelBooking and repair on fakes (fakeredis + in-memory SQL)."""

from __future__ import annotations

import asyncio

import pytest

from seat_inventory.domain.errors import (
    BackendUnavailable,
    HoldConfirming,
    HoldNotFound,
    HoldNotOwned,
    InvalidArgument,
    SeatsUnavailable,
)
from seat_inventory.domain.model import BookingStatus, SeatStatus
from seat_inventory.service_layer.bookings import BookingService
from tests.unit.test_inventory_service import SEATS, World


class BookingWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.bookings = BookingService(self.holds, self.repo, self.catalog, self.limits, self.clock)

    async def status(self, seat: str) -> SeatStatus:
        return dict((await self.inventory.availability("show")).seats)[seat]


@pytest.fixture
async def world() -> BookingWorld:
    w = BookingWorld()
    await w.admin.create_event("show", "The Show", SEATS)
    return w


async def test_confirm_books_the_seats(world: BookingWorld) -> None:
    """Confirm writes one booking with the hold's seats and order_ref; the seats become BOOKED."""
    hold = await world.inventory.reserve("show", ["A-1", "A-2"], "alice", None)
    booking = await world.bookings.confirm(hold.hold_id, "alice", order_ref="order-7")
    assert (booking.seat_ids, booking.order_ref) == (("A-1", "A-2"), "order-7")
    assert len(world.repo.bookings) == 1
    assert await world.status("A-1") is SeatStatus.BOOKED
    with pytest.raises(SeatsUnavailable):
        await world.inventory.reserve("show", ["A-2"], "bob", None)


async def test_confirm_twice_returns_the_same_booking(world: BookingWorld) -> None:
    """A retried Confirm, after the first finished, returns the same booking."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    first = await world.bookings.confirm(hold.hold_id, "alice")
    again = await world.bookings.confirm(hold.hold_id, "alice")
    assert again == first


async def test_concurrent_confirms_make_one_booking(world: BookingWorld) -> None:
    """Ten Confirms of one hold at once: one booking, ten equal answers."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    answers = await asyncio.gather(
        *(world.bookings.confirm(hold.hold_id, "alice") for _ in range(10))
    )
    assert len(world.repo.bookings) == 1
    assert len(set(answers)) == 1


async def test_confirm_by_another_holder_is_not_owned(world: BookingWorld) -> None:
    """Confirm by someone else is HOLD_NOT_OWNED, before and after the real confirm."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    with pytest.raises(HoldNotOwned):
        await world.bookings.confirm(hold.hold_id, "mallory")
    await world.bookings.confirm(hold.hold_id, "alice")
    with pytest.raises(HoldNotOwned):
        await world.bookings.confirm(hold.hold_id, "mallory")


async def test_lapsed_or_released_hold_cannot_be_confirmed(world: BookingWorld) -> None:
    """A lapsed or released hold is HOLD_NOT_FOUND and writes no booking."""
    lapsed = await world.inventory.reserve("show", ["A-1"], "alice", 2_000)
    world.clock.advance(2_000)
    with pytest.raises(HoldNotFound):
        await world.bookings.confirm(lapsed.hold_id, "alice")
    released = await world.inventory.reserve("show", ["A-2"], "alice", None)
    await world.inventory.release(released.hold_id, "alice")
    with pytest.raises(HoldNotFound):
        await world.bookings.confirm(released.hold_id, "alice")
    assert world.repo.bookings == {}


async def test_order_ref_over_128_chars_is_invalid(world: BookingWorld) -> None:
    """An order_ref longer than 128 characters is INVALID_ARGUMENT on order_ref."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    with pytest.raises(InvalidArgument, match="order_ref"):
        await world.bookings.confirm(hold.hold_id, "alice", order_ref="x" * 129)


async def test_database_down_keeps_the_hold_confirmable(world: BookingWorld) -> None:
    """With the database down Confirm is UNAVAILABLE; the hold stays pinned and a
    retry after the database returns books it."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    world.repo.down = True
    with pytest.raises(BackendUnavailable):
        await world.bookings.confirm(hold.hold_id, "alice")
    world.repo.down = False
    assert await world.status("A-1") is SeatStatus.HELD
    booking = await world.bookings.confirm(hold.hold_id, "alice")
    assert booking.seat_ids == ("A-1",)


async def test_claimed_hold_cannot_be_released(world: BookingWorld) -> None:
    """Once a Confirm has claimed a hold, Release is FAILED_PRECONDITION HOLD_CONFIRMING."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    await world.holds.claim("show", hold.hold_id, "alice")
    with pytest.raises(HoldConfirming):
        await world.inventory.release(hold.hold_id, "alice")


async def test_repair_releases_a_claim_that_never_committed(world: BookingWorld) -> None:
    """A claim left behind past its deadline is released by the sweeper's repair,
    and a late commit of that hold then fails."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", 5_000)
    await world.holds.claim("show", hold.hold_id, "alice")
    world.clock.advance(31_000)
    assert (await world.holds.expire_due("show")).confirming == [hold.hold_id]
    assert await world.bookings.repair("show", hold.hold_id) is False
    assert await world.status("A-1") is SeatStatus.AVAILABLE
    with pytest.raises(HoldNotFound):
        await world.bookings.confirm(hold.hold_id, "alice")


async def test_repair_finalizes_a_committed_booking(world: BookingWorld) -> None:
    """A booking committed in SQL whose finalize never ran is mirrored by repair."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", 5_000)

    async def claim_only():  # type: ignore[no-untyped-def]
        seats = await world.holds.claim("show", hold.hold_id, "alice")
        from seat_inventory.domain.model import Booking

        return Booking("bk_0123456789ab", "show", hold.hold_id, seats, "alice", "", 0)

    await world.repo.commit_booking("show", hold.hold_id, claim_only)
    world.clock.advance(31_000)
    assert await world.bookings.repair("show", hold.hold_id) is True
    assert await world.status("A-1") is SeatStatus.BOOKED


async def test_cancel_booking_frees_the_seats(world: BookingWorld) -> None:
    """CancelBooking marks the booking cancelled and the seats can be held again."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)
    booking = await world.bookings.confirm(hold.hold_id, "alice")
    cancelled = await world.bookings.cancel(booking.booking_id)
    assert cancelled.status is BookingStatus.CANCELLED
    assert await world.status("A-1") is SeatStatus.AVAILABLE
    assert (await world.bookings.cancel(booking.booking_id)).status is BookingStatus.CANCELLED
    await world.inventory.reserve("show", ["A-1"], "bob", None)


async def test_cancel_of_unknown_or_malformed_booking(world: BookingWorld) -> None:
    """An unknown booking id is BOOKING_NOT_FOUND; a malformed one INVALID_ARGUMENT."""
    from seat_inventory.domain.errors import BookingNotFound

    with pytest.raises(BookingNotFound):
        await world.bookings.cancel("bk_doesnotexist00")
    with pytest.raises(InvalidArgument):
        await world.bookings.cancel("nope")


async def test_stalled_finalize_after_cancel_does_not_resell(world: BookingWorld) -> None:
    """A finalize that stalled past a retry and a CancelBooking leaves the seats free."""
    hold = await world.inventory.reserve("show", ["A-1"], "alice", None)

    async def claim_only():  # type: ignore[no-untyped-def]
        seats = await world.holds.claim("show", hold.hold_id, "alice")
        from seat_inventory.domain.model import Booking

        return Booking("bk_stalled0000001", "show", hold.hold_id, seats, "alice", "", 0)

    booking, _ = await world.repo.commit_booking("show", hold.hold_id, claim_only)
    retried = await world.bookings.confirm(hold.hold_id, "alice")  # finalizes
    assert retried == booking
    await world.bookings.cancel(booking.booking_id)
    await world.holds.finalize("show", hold.hold_id, booking.seat_ids)  # the stalled one
    assert await world.status("A-1") is SeatStatus.AVAILABLE


async def test_a_late_finalize_after_a_cancel_does_not_put_the_seats_back(
    world: BookingWorld,
) -> None:
    """A booking committed whose finalize has not run yet (deferred, or a repair
    between reading the booking and finalizing) is cancelled: the cancel gives
    the confirming hold up, so the late finalize leaves the seats free."""
    hold = await world.inventory.reserve("show", ["A-1", "A-2"], "alice", None)

    async def claim_only():  # type: ignore[no-untyped-def]
        seats = await world.holds.claim("show", hold.hold_id, "alice")
        from seat_inventory.domain.model import Booking

        return Booking("bk_unmirrored0001", "show", hold.hold_id, seats, "alice", "", 0)

    booking, _ = await world.repo.commit_booking("show", hold.hold_id, claim_only)
    assert await world.status("A-1") is SeatStatus.HELD  # pinned, not mirrored yet
    await world.bookings.cancel(booking.booking_id)
    assert await world.status("A-1") is SeatStatus.AVAILABLE
    await world.holds.finalize("show", hold.hold_id, booking.seat_ids)  # the late one
    assert [await world.status(s) for s in ("A-1", "A-2")] == [SeatStatus.AVAILABLE] * 2
    again = await world.inventory.reserve("show", ["A-1", "A-2"], "bob", None)
    assert again.seat_ids == ("A-1", "A-2")


async def sold_behind_redis(world: BookingWorld) -> None:
    """A-1 sold in SQL to alice, then Redis forgets it (a restore from an older
    snapshot): bob can hold it again, and only the database refuses his Confirm."""
    alice = await world.inventory.reserve("show", ["A-1"], "alice", None)
    await world.bookings.confirm(alice.hold_id, "alice")
    await world.redis.srem("{e:show}:sold", "A-1")


async def test_losing_to_a_sale_redis_forgot_gives_the_hold_up_in_sql_first(
    world: BookingWorld,
) -> None:
    """Confirm finds in SQL a sale Redis did not know: SEATS_UNAVAILABLE, the hold is
    given up in SQL (no retry of it can commit later) and in Redis (A-1 sold, A-2 free)."""
    await sold_behind_redis(world)
    bob = await world.inventory.reserve("show", ["A-1", "A-2"], "bob", None)
    with pytest.raises(SeatsUnavailable):
        await world.bookings.confirm(bob.hold_id, "bob")
    assert bob.hold_id in world.repo.given_up
    assert [await world.status(s) for s in ("A-1", "A-2")] == [
        SeatStatus.BOOKED,
        SeatStatus.AVAILABLE,
    ]
    with pytest.raises(HoldNotFound):
        await world.bookings.confirm(bob.hold_id, "bob")


async def test_losing_to_a_sale_while_a_retry_of_the_hold_committed_answers_its_booking(
    world: BookingWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the refused commit and its give-up, alice's booking is cancelled and a
    retry of bob's Confirm commits: the refused call answers that booking and
    mirrors it, instead of freeing seats SQL has just sold to bob."""
    await sold_behind_redis(world)
    alice_booking = next(iter(world.repo.bookings.values()))
    bob = await world.inventory.reserve("show", ["A-1", "A-2"], "bob", None)
    settle = world.repo.settle_unconfirmed

    async def retry_commits_first(event_id: str, hold_id: str, now_ms: int):  # type: ignore[no-untyped-def]
        async def nothing(_: object) -> None:
            return None

        await world.repo.cancel_booking(alice_booking.booking_id, now_ms, nothing)
        monkeypatch.setattr(world.repo, "settle_unconfirmed", settle)
        await world.bookings.confirm(bob.hold_id, "bob")  # the retry, on another worker
        return await settle(event_id, hold_id, now_ms)

    monkeypatch.setattr(world.repo, "settle_unconfirmed", retry_commits_first)
    booking = await world.bookings.confirm(bob.hold_id, "bob")
    assert (booking.hold_id, booking.seat_ids) == (bob.hold_id, ("A-1", "A-2"))
    assert booking.status is BookingStatus.CONFIRMED
    assert [await world.status(s) for s in ("A-1", "A-2")] == [SeatStatus.BOOKED] * 2
    with pytest.raises(SeatsUnavailable):
        await world.inventory.reserve("show", ["A-2"], "mallory", None)
