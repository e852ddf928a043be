import asyncio
import random
import threading
import time
from collections.abc import Callable

import pytest
from marketpipe.fetch.rate_limiter import shared_windows
from marketpipe.ingestion.connectors import RateLimiter


def at_most_n_per_window(times: list[float], n: int, window: float) -> bool:
    times = sorted(times)
    return all(times[i + n] - times[i] >= window for i in range(len(times) - n))


def test_reservations_keep_n_per_window_with_a_margin() -> None:
    now = [100.0]
    limiter = RateLimiter(3, 10.0, clock=lambda: now[0])
    assert [limiter._reserve().wait for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter._reserve().wait
    assert 10.0 < wait <= 10.25  # the window plus a small margin against jitter
    now[0] = 200.0
    assert limiter._reserve().wait == 0.0


def test_penalize_holds_everyone_back() -> None:
    now = [0.0]
    limiter = RateLimiter(100, 60.0, clock=lambda: now[0])
    limiter.penalize(5.0)
    assert limiter._reserve().wait == pytest.approx(5.0)
    assert limiter.waits == 1 and limiter.waited_seconds == pytest.approx(5.0)


def test_threads_sharing_a_limiter_never_exceed_it() -> None:
    limiter = RateLimiter(4, 0.4)
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            limiter.acquire()
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 12 and at_most_n_per_window(sent, 4, 0.4)


def test_async_tasks_sharing_a_limiter_never_exceed_it() -> None:
    limiter = RateLimiter(5, 0.3)
    sent: list[float] = []

    async def task() -> None:
        for _ in range(3):
            await limiter.async_acquire()
            sent.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(5)))

    asyncio.run(main())
    assert len(sent) == 15 and at_most_n_per_window(sent, 5, 0.3)


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 60)


def test_an_answered_request_counts_from_its_answer() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    first = limiter._reserve()
    limiter._reserve()
    now[0] = 3.0  # the first answer arrives late: the server may have seen it late too
    first.done()
    wait = limiter._reserve().wait
    assert 13.0 - 3.0 <= wait <= 13.25 - 3.0


class ThreadWindow:
    """A shared window within one process: what a cluster's semaphore is across processes."""

    def __init__(self, leases: int) -> None:
        self.leases = threading.BoundedSemaphore(leases)
        self.taken = 0
        self.penalties: list[float] = []

    def take(self) -> None:
        self.leases.acquire()
        self.taken += 1

    async def async_take(self) -> None:
        await asyncio.to_thread(self.take)

    def give_back(self, after_seconds: float) -> None:
        threading.Timer(after_seconds, self.leases.release).start()

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)

    def learn(self, requests_per_window: int) -> None:
        self.learning = (requests_per_window, time.time())

    def learned(self) -> tuple[int, float] | None:
        return getattr(self, "learning", None)


def test_limiters_made_in_shared_windows_hold_one_limit_together() -> None:
    windows: dict[tuple[int, float], ThreadWindow] = {}

    def factory(n: int, window: float) -> ThreadWindow:
        return windows.setdefault((n, window), ThreadWindow(n))

    with shared_windows(factory):
        first, second = RateLimiter(3, 0.3), RateLimiter(3, 0.3)  # two workers' providers
    alone = RateLimiter(3, 0.3)
    sent: list[float] = []

    def send(limiter: RateLimiter) -> None:
        for _ in range(4):
            slot = limiter.acquire_slot()
            sent.append(time.monotonic())
            slot.done()

    threads = [threading.Thread(target=send, args=(lim,)) for lim in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 8
    # Each alone allows 3 in 0.3 s; together they kept 3 in 0.3 s, not 6.
    assert at_most_n_per_window(sent, 3, 0.3)
    assert windows[(3, 0.3)].taken == 8
    assert alone._shared is None  # made outside the block: paces itself only


def test_async_requests_take_the_shared_window_too() -> None:
    window = ThreadWindow(2)
    with shared_windows(lambda n, w: window):
        limiter = RateLimiter(2, 0.2)

    async def main() -> list[float]:
        sent: list[float] = []

        async def one() -> None:
            slot = await limiter.async_acquire_slot()
            sent.append(time.monotonic())
            slot.done()

        await asyncio.gather(*(one() for _ in range(6)))
        return sent

    sent = asyncio.run(main())
    assert window.taken == 6
    assert at_most_n_per_window(sent, 2, 0.2)


def test_a_penalty_is_passed_to_the_shared_window() -> None:
    window = ThreadWindow(2)
    with shared_windows(lambda n, w: window):
        limiter = RateLimiter(2, 0.2)
    limiter.penalize(3.0)
    assert window.penalties == [3.0]
    assert limiter._reserve().wait == pytest.approx(3.0, abs=0.1)  # and this process waits


def test_bare_429s_at_one_count_teach_the_limit_the_server_showed_once_a_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(1000, 10.0, clock=lambda: now[0])
    accepted = [limiter._reserve() for _ in range(5)]
    burst = [limiter._reserve() for _ in range(3)]  # in flight when the first 429 comes back
    now[0] = 1.0
    for slot in accepted:
        slot.done()
    # The first burst may be a blip: nothing is learned, nobody else waits.
    assert [slot.done(rejected=True) for slot in burst] == [None, None, None]
    assert limiter.limit == 1000
    retried = limiter._reserve()
    assert retried.wait == 0.0
    now[0] = 1.5
    assert retried.done(rejected=True) is None  # the same count twice: not yet
    third = [limiter._reserve() for _ in range(2)]
    now[0] = 2.5
    assert third[0].done(rejected=True) == 5  # a third time at 5: the server takes 5
    assert third[1].done(rejected=True) is None  # the same burst teaches once
    assert limiter.limit == 5 and limiter.slowdowns == 1 and limiter.bare_rejections == 6
    # The rejected ones go again only when the window has room: after the first accepted
    # one's answer leaves it.
    assert 9.0 - 0.5 <= limiter._reserve().wait <= 9.25
    # A hinted 429 teaches nothing (the server said when to come back).
    hinted = limiter._reserve()
    assert hinted.done(rejected=True, hinted=True) is None and limiter.limit == 5


def simulate(
    limiter: RateLimiter,
    now: list[float],
    requests: int,
    server_limit: Callable[[float], int | None],
    fault: Callable[[], bool] = lambda: False,
) -> tuple[int, list[int]]:
    """Send ``requests`` one after another through ``limiter`` (its clock ``now``) to a server
    that accepts ``server_limit(t)`` requests in any window (``None``: no limit) and answers a
    bare 429 when over it, or when ``fault()``. Returns (429s met, the limit after each send)."""
    accepted: list[float] = []
    rejected = 0
    limits = []
    sent = 0
    while sent < requests:
        slot = limiter._reserve()
        now[0] += max(0.0, slot.wait) + 0.01  # the answer takes 10 ms
        t = now[0]
        limit = server_limit(t)
        recent = [a for a in accepted if a > t - limiter.window_seconds]
        if (limit is not None and len(recent) >= limit) or fault():
            rejected += 1
            slot.done(rejected=True)
        else:
            accepted.append(t)
            slot.done()
            sent += 1
        limits.append(limiter.limit)
    return rejected, limits


def test_a_server_limit_is_learned_with_few_rejections() -> None:
    now = [0.0]
    limiter = RateLimiter(100, 10.0, clock=lambda: now[0])
    rejected, limits = simulate(limiter, now, 300, lambda t: 20)
    assert 15 <= limits[-1] <= 30 and limiter.slowdowns >= 1
    assert rejected <= 25  # a burst to learn it, then one now and then at each probe upward
    assert now[0] <= 300 / 20 * 10 * 1.6  # near the server's own pace (150 s)


def test_random_429s_never_collapse_the_pace() -> None:
    """No limit at all, a tenth of the answers bare 429s at random: the pace stays near the
    configured one (the last turn's limiter sank to 1 a minute)."""
    now = [0.0]
    rng = random.Random(11)
    limiter = RateLimiter(60, 10.0, clock=lambda: now[0])
    rejected, limits = simulate(limiter, now, 600, lambda t: None, lambda: rng.random() < 0.1)
    assert rejected > 50  # the faults were met
    assert min(limits[-100:]) >= 30
    assert now[0] <= 600 / 60 * 10 * 2.5  # ideal 100 s


def test_a_server_that_raises_its_limit_is_followed_upward() -> None:
    now = [0.0]
    limiter = RateLimiter(100, 10.0, clock=lambda: now[0])
    simulate(limiter, now, 200, lambda t: 8)
    assert limiter.limit <= 10
    raised = now[0]
    simulate(limiter, now, 1000, lambda t: 8 if t < raised else 40)
    assert 30 <= limiter.limit <= 50
    # Probing costs at most one burst of rejections in every few windows.
    rejected, limits = simulate(limiter, now, 400, lambda t: 40)
    assert rejected <= 20 and min(limits) >= 26


def test_a_limit_learned_by_one_process_is_taken_up_by_the_others() -> None:
    windows: dict[tuple[int, float], ThreadWindow] = {}

    def factory(n: int, window: float) -> ThreadWindow:
        return windows.setdefault((n, window), ThreadWindow(n))

    with shared_windows(factory):
        first, second = RateLimiter(50, 5.0), RateLimiter(50, 5.0)
    for _ in range(4):
        first.acquire_slot().done()
    assert first.acquire_slot().done(rejected=True) is None
    assert first.acquire_slot().done(rejected=True) is None
    assert first.acquire_slot().done(rejected=True) == 4
    second.acquire_slot().done()
    assert second.limit == 4  # its next request took up what the first learned
    second.acquire_slot().done()
    assert second.limit == 4  # once: it is not lowered again by the same learning


def test_two_accounts_of_one_provider_hold_separate_limits_on_a_cluster() -> None:
    from marketpipe.model.secrets import Secret
    from marketpipe.run.dask.coordination import DaskWindows, account_tag

    mine = (Secret("PKACCOUNTONE"), Secret("SKSECRETONE"))
    theirs = (Secret("PKACCOUNTTWO"), Secret("SKSECRETTWO"))
    assert account_tag(mine) == account_tag(mine) != account_tag(theirs)
    assert len(account_tag(mine)) == 12 and "ONE" not in account_tag(mine)
    windows = DaskWindows("alpaca", 2)
    assert windows.of_account(mine) != windows.of_account(theirs)
    assert "SKSECRETONE" not in repr(windows.of_account(mine))
