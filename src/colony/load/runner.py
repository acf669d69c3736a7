"""A load run: set up (what is for sale, who buys), then release arrivals on schedule, each as
its own task, and record how every one ended.

The pacer never waits for a request. What bounds the work under way is ``max_in_flight``: an
arrival due while that many are still running is recorded at once as failed ("dropped"), not
queued, because queueing it would quietly turn the open loop back into a closed one. After the
last arrival the run waits for those still running; each request has its own timeout, so that
wait ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from colony.load.buyers import BuyerPool, SignInError, sign_in
from colony.load.client import ApiClient
from colony.load.config import LoadConfig
from colony.load.pacing import arrival_count, arrival_offsets, pace, schedule_seconds
from colony.load.recorder import Recorder
from colony.load.report import LoadReport
from colony.load.workload import BUYER_KINDS, KINDS, Result, SetupError, Workload, discover

Progress = Callable[[str, int, int], None]
"""``progress(task, done, total)``: ``"buyers"`` while signing in, then ``"load"``, whose
``done`` counts arrivals that have ended (answered, failed, timed out or dropped)."""

_LEAD_SECONDS = 0.05  # so the first arrivals are not due before the pacer is running
_TICK_SECONDS = 0.2
_DROPPED = Result(outcome="failed", error="dropped: too many in flight", dropped=True)


async def run_load(
    config: LoadConfig, progress: Progress | None = None, stop: asyncio.Event | None = None
) -> LoadReport:
    """Run the load ``config`` describes against ``config.url`` and report what happened.
    Setting ``stop`` ends the schedule early (as Ctrl-C does for ``colony load``); the
    arrivals already sent are still waited for and reported.

    Raises SetupError, before sending any load, when the marketplace cannot be reached, has
    nothing to sell for the mix, or its buyers cannot sign in.
    """
    client = ApiClient(config.url, config.timeout, config.connections)
    try:
        workload = await _prepare(client, config, progress)
        with _history(config.history) as history:
            return await _drive(workload, config, history, progress, stop)
    finally:
        await client.close()


async def _prepare(client: ApiClient, config: LoadConfig, progress: Progress | None) -> Workload:
    try:
        shop = await discover(client)
        needs_buyers = any(config.mix.get(kind, 0) > 0 for kind in BUYER_KINDS)
        buyers = await sign_in(client, config.buyers, progress) if needs_buyers else []
    except SignInError as exc:
        raise SetupError(str(exc)) from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise SetupError(
            f"{config.url} does not answer as a Colony marketplace does ({exc!r})"
        ) from None
    workload = Workload(client, shop, BuyerPool(buyers), config.mix)
    workload.check()
    return workload


async def _drive(
    workload: Workload,
    config: LoadConfig,
    history: IO[bytes] | None,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> LoadReport:
    loop = asyncio.get_running_loop()
    # Not loop.time(): under uvloop it is libuv's cached millisecond clock.
    clock = time.perf_counter
    setup_requests = workload.client.requests
    plan = config.plan()
    total = arrival_count(plan)
    start = clock() + _LEAD_SECONDS
    started_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=_LEAD_SECONDS)
    kinds = [kind for kind in KINDS if config.mix.get(kind, 0) > 0]
    recorder = Recorder(kinds, start, history)
    rng = random.Random(config.seed)
    in_flight: set[asyncio.Task[None]] = set()
    last_start = start

    async def arrival(index: int, kind: str, due: float, own: random.Random) -> None:
        began = clock()
        try:
            result = await workload.perform(kind, own)
        except asyncio.CancelledError:
            result = Result(outcome="unknown", error="abandoned at the end of the run")
            recorder.record(index, kind, due, began, clock(), result)
            raise
        except Exception as exc:  # a bug here must not lose the arrival from the history
            result = Result(outcome="unknown", error=f"load generator: {exc!r}"[:120])
        recorder.record(index, kind, due, None if result.dropped else began, clock(), result)

    def release(index: int, due: float) -> None:
        nonlocal last_start
        # Drawn for every arrival, dropped or not, so one seed gives one sequence of kinds.
        kind = workload.choose(rng)
        own = random.Random(rng.getrandbits(64))
        if len(in_flight) >= config.max_in_flight:
            recorder.record(index, kind, due, None, clock(), _DROPPED)
            return
        last_start = clock()
        task = loop.create_task(arrival(index, kind, due, own))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    async def tick() -> None:
        while progress is not None:
            progress("load", recorder.ended, total)
            await asyncio.sleep(_TICK_SECONDS)

    ticker = asyncio.create_task(tick())
    try:
        released = await pace(arrival_offsets(plan), start, release, clock, stop=stop)
        stopped_at = clock()
        if in_flight:
            # A checkout is at most five requests, each bounded by the timeout.
            _, late = await asyncio.wait(set(in_flight), timeout=6 * config.timeout + 1)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
    finally:
        ticker.cancel()
        for task in in_flight:  # only if the run itself was cancelled or failed
            task.cancel()
        await asyncio.gather(ticker, *in_flight, return_exceptions=True)
    if progress is not None:
        progress("load", recorder.ended, released)
    return recorder.report(
        config,
        started_at=started_at.isoformat(timespec="milliseconds"),
        schedule_s=schedule_seconds(plan) if released == total else stopped_at - start,
        last_start_s=last_start - start,
        arrivals=released,
        stopped=released < total,
        requests=workload.client.requests - setup_requests,
        buyers=len(workload.buyers),
    )


@contextlib.contextmanager
def _history(path: str | None) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield None
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        yield file
