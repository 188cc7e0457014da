"""Hold and booking ids: unique, unguessable (the OS's CSPRNG, fetched in
blocks), and a hold id says which event it belongs to."""

from __future__ import annotations

import base64
import os
import threading

import pytest

from seat_inventory.domain import ids
from seat_inventory.domain.ids import HOLD_TOKEN_BYTES, event_of_hold, new_booking_id, new_hold_id


def token_of(hold_id: str) -> bytes:
    token = hold_id.split(".")[1]
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_hold_ids_name_their_event_and_carry_the_full_token() -> None:
    for event_id in ("ev-1", "A.b:c_d-e", "x" * 64):
        hold_id = new_hold_id(event_id)
        assert event_of_hold(hold_id) == event_id
        assert len(token_of(hold_id)) == HOLD_TOKEN_BYTES


def test_ids_do_not_repeat_across_many_buffer_refills() -> None:
    """50,000 ids of each kind span ~500 blocks of random bytes."""
    holds = {new_hold_id("ev") for _ in range(50_000)}
    bookings = {new_booking_id() for _ in range(50_000)}
    assert len(holds) == 50_000
    assert len(bookings) == 50_000


def test_blocks_are_handed_out_once_and_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every byte fetched from the OS goes into exactly one id; a request
    larger than what is left starts a fresh block."""
    fetched: list[bytes] = []
    real_urandom = os.urandom

    def urandom(n: int) -> bytes:
        block = real_urandom(n)
        fetched.append(block)
        return block

    monkeypatch.setattr(ids.os, "urandom", urandom)
    source = ids._RandomBytes(chunk=40)
    taken = [source.take(18) for _ in range(6)]  # 2 per 40-byte block, 4 bytes left over
    assert len(fetched) == 3
    assert taken == [block[i : i + 18] for block in fetched for i in (0, 18)]
    assert source.take(100) == fetched[-1]  # larger than a block: a block of its own


def test_threads_never_get_the_same_bytes() -> None:
    source = ids._RandomBytes(chunk=4096)
    out: list[list[bytes]] = [[] for _ in range(8)]

    def work(mine: list[bytes]) -> None:
        for _ in range(5_000):
            mine.append(source.take(16))

    threads = [threading.Thread(target=work, args=(mine,)) for mine in out]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [token for mine in out for token in mine]
    assert len(set(every)) == len(every) == 40_000


def test_a_forked_child_does_not_reuse_the_parents_bytes() -> None:
    source = ids._RandomBytes(chunk=4096)
    source.take(16)  # the parent has a block with bytes left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes and leave at once
        os.write(write, source.take(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != source.take(16)
