"""The checkout benchmark: concurrent buyers, each checking out a 3-item cart.

Run by ``make bench`` (or ``.venv/bin/python -m bench --only checkout``). Against ``colony up``
in the one-process topology and then ``colony up --distributed`` (one process per service,
events over JetStream, SQLite files), with the provider simulator in its own process:

1. set-up, not timed: register buyers, log them in, fill each cart with 3 in-stock items;
2. throughput: every buyer posts its order, ``--concurrency`` at a time; the clock runs from
   the first POST to the last saga finished. Completion is read from the orders database
   (read-only, a SQLite reader beside the server), not by polling the API, so that measuring
   does not load the server. Reported: completed orders/s, and how many ended otherwise;
3. latency: orders posted open-loop at half the measured rate (a fixed schedule, not
   waiting for answers), the POST's p50 and p99 reported.

CPU seconds per 1,000 orders count every process of the marketplace (``colony up`` and all
its descendants: services, NATS, provider, mail sink) over the throughput run, which starts
once the set-up's own aftermath (the new accounts' events and mails) has died down: the price
of distribution, set against the one-process figure of the same run. Two figures:

- to the last saga finished (``cpu_s_per_1000_orders``): a saturated process's time to take
  the orders through, with whatever of their aftermath (mails, the courier's steps) ran
  meanwhile;
- until the marketplace is idle again (``cpu_s_per_1000_orders_until_idle``): everything
  the orders cost, their mails and courier steps included, whenever they ran. A change that
  moves work into or out of the saga window moves the first figure, not this one.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ADDRESS = {
    "name": "Bench Buyer",
    "line1": "1 Load Street",
    "city": "Testville",
    "postcode": "12345",
    "country": "DE",
}
CARD = "4242424242424242"
# Stand-ins for systems outside the marketplace, run beside it on this machine.
THIRD_PARTIES = ("payment_provider", "mail_sink")


class Buyer:
    def __init__(self, email: str, token: str) -> None:
        self.email = email
        self.headers = {"authorization": f"Bearer {token}"}


async def _json(response: aiohttp.ClientResponse, expect: int) -> Any:
    body = await response.json(content_type=None)
    if response.status != expect:
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {body}")
    return body


async def in_stock_listings(session: aiohttp.ClientSession, base: str, want: int) -> list[str]:
    found: list[str] = []
    page = 1
    while len(found) < want:
        async with session.get(
            f"{base}/api/v1/listings", params={"page": page, "page_size": 100}
        ) as r:
            items = (await _json(r, 200))["items"]
        if not items:
            break
        for item in items:
            async with session.get(f"{base}/api/v1/listings/{item['id']}") as r:
                detail = await _json(r, 200)
            if (detail["available"] or 0) >= 100:
                found.append(item["id"])
        page += 1
    return found[:want]


async def make_buyers(
    session: aiohttp.ClientSession, base: str, count: int, listings: list[str], tag: str
) -> list[Buyer]:
    rng = random.Random(tag)
    semaphore = asyncio.Semaphore(32)

    async def one(i: int) -> Buyer:
        async with semaphore:
            email = f"bench-{tag}-{i}@bench.example"
            account = {
                "email": email,
                "password": "bench-password",
                "name": "Bench",
                "role": "buyer",
            }
            async with session.post(f"{base}/api/v1/accounts", json=account) as r:
                await _json(r, 201)
            login = {"email": email, "password": "bench-password"}
            async with session.post(f"{base}/api/v1/tokens", json=login) as r:
                buyer = Buyer(email, (await _json(r, 200))["access_token"])
            for listing_id in rng.sample(listings, 3):
                async with session.post(
                    f"{base}/api/v1/cart/items",
                    json={"listing_id": listing_id, "quantity": 1},
                    headers=buyer.headers,
                ) as r:
                    await _json(r, 200)
            return buyer

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def post_order(session: aiohttp.ClientSession, base: str, buyer: Buyer) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.post(
        f"{base}/api/v1/orders",
        json={"card_number": CARD, "address": ADDRESS},
        headers={**buyer.headers, "idempotency-key": str(uuid.uuid4())},
    ) as r:
        body = await _json(r, 201)
    return time.perf_counter() - started, body["order_id"]


def saga_outcomes(
    orders_db: Path, order_ids: set[str]
) -> tuple[dict[str, int], str | None, str | None]:
    """Statuses of the given orders' checkout sagas, and the first start and last finish."""
    with sqlite3.connect(f"file:{orders_db}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute(
            "SELECT id, status, created_at, updated_at FROM saga_instances WHERE kind = 'checkout'"
        ).fetchall()
    mine = [row for row in rows if row[0] in order_ids]
    counts: dict[str, int] = {}
    for row in mine:
        counts[row[1]] = counts.get(row[1], 0) + 1
    if not mine:
        return counts, None, None
    return counts, min(r[2] for r in mine), max(r[3] for r in mine)


async def wait_for_sagas(orders_db: Path, order_ids: set[str], within: float) -> dict[str, int]:
    deadline = time.monotonic() + within
    while True:
        counts, _, _ = saga_outcomes(orders_db, order_ids)
        done = counts.get("completed", 0) + counts.get("cancelled", 0)
        if done >= len(order_ids) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.1)


def _seconds_between(first: str, last: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def tree_cpu_seconds(pid: int) -> Counter[str]:
    """CPU time (user + system) of a process and all its descendants, reaped ones included,
    by program (a service's name for ``colony serve``): the whole marketplace's cost, whatever
    number of processes it runs as."""
    tick = os.sysconf("SC_CLK_TCK")
    spent: Counter[str] = Counter()
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            argv = Path(f"/proc/{current}/cmdline").read_bytes().decode().split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        spent[_program(argv)] += (utime + stime + cutime + cstime) / tick
        pending += [int(child) for child in children]
    return spent


async def wait_until_idle(
    pid: int, busy_share: float = 0.1, interval: float = 0.5, within: float = 120.0
) -> float:
    """Wait until the marketplace's processes use less than ``busy_share`` of a core over
    ``interval``; returns how long that took."""
    started = time.monotonic()
    before = sum(tree_cpu_seconds(pid).values())
    while time.monotonic() - started < within:
        await asyncio.sleep(interval)
        now = sum(tree_cpu_seconds(pid).values())
        if now - before < busy_share * interval:
            break
        before = now
    return time.monotonic() - started


def _program(argv: list[str]) -> str:
    if "serve" in argv:
        return argv[argv.index("serve") + 1]
    if "-m" in argv:
        return argv[argv.index("-m") + 1].removeprefix("colony.")
    return Path(argv[0]).name if "up" not in argv else "colony up"


async def run(
    base: str,
    data_dir: Path,
    orders: int,
    concurrency: int,
    latency_seconds: int,
    profiler: Profiler | None = None,
    server_pid: int | None = None,
) -> dict:
    orders_db = data_dir / "orders.db"
    connector = aiohttp.TCPConnector(limit=concurrency + 16)
    async with aiohttp.ClientSession(connector=connector) as session:
        listings = await in_stock_listings(session, base, 200)
        if len(listings) < 10:
            raise SystemExit("not enough stocked listings to check out")
        print(f"  set-up: {orders:,} buyers with 3-item carts…", flush=True)
        buyers = await make_buyers(session, base, orders, listings, f"t{uuid.uuid4().hex[:6]}")
        if server_pid:
            # The set-up's own tail (welcome mails, events of 2,000 new accounts) is not the
            # orders' cost: measured from a marketplace that has finished it.
            settled_in = await wait_until_idle(server_pid)
            print(f"  set-up settled in {settled_in:.1f} s", flush=True)

        # Throughput: all buyers, `concurrency` POSTs in flight.
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(buyer: Buyer) -> tuple[float, str]:
            async with semaphore:
                return await post_order(session, base, buyer)

        if profiler:
            profiler.start()
        cpu_before = tree_cpu_seconds(server_pid) if server_pid else None
        started = time.perf_counter()
        posted = await asyncio.gather(*(bounded(b) for b in buyers))
        post_seconds = time.perf_counter() - started
        ids = {order_id for _, order_id in posted}
        counts = await wait_for_sagas(orders_db, ids, within=300)
        cpu_by_program = (
            tree_cpu_seconds(server_pid) - cpu_before if server_pid and cpu_before else None
        )
        cpu = sum(cpu_by_program.values()) if cpu_by_program else None
        if profiler:
            profiler.stop()
        _, first, last = saga_outcomes(orders_db, ids)
        cpu_until_idle = None
        if server_pid and cpu_before:
            await wait_until_idle(server_pid)
            everything = tree_cpu_seconds(server_pid) - cpu_before
            cpu_until_idle = {
                "all": sum(everything.values()),
                "colony": sum(v for k, v in everything.items() if k not in THIRD_PARTIES),
            }
        wall = time.perf_counter() - started
        span = _seconds_between(first, last) if first and last else wall
        completed = counts.get("completed", 0)
        throughput = {
            "orders": len(ids),
            "outcomes": counts,
            "posted_in_s": round(post_seconds, 2),
            "first_post_to_last_saga_s": round(span, 2),
            "completed_per_s": round(completed / span, 1),
            "post_p50_ms": round(statistics.median(s for s, _ in posted) * 1000, 1),
            "post_p99_ms": round(_percentile([s for s, _ in posted], 99) * 1000, 1),
            "cpu_s_per_1000_orders": round(cpu / len(ids) * 1000, 2) if cpu else None,
            "cpu_s_per_1000_orders_without_third_parties": (
                round(
                    sum(v for k, v in cpu_by_program.items() if k not in THIRD_PARTIES)
                    / len(ids)
                    * 1000,
                    2,
                )
                if cpu_by_program
                else None
            ),
            "cpu_s_per_1000_orders_until_idle": (
                round(cpu_until_idle["all"] / len(ids) * 1000, 2) if cpu_until_idle else None
            ),
            "cpu_s_per_1000_orders_until_idle_without_third_parties": (
                round(cpu_until_idle["colony"] / len(ids) * 1000, 2) if cpu_until_idle else None
            ),
            "cpu_s_per_1000_orders_by_program": {
                name: round(seconds / len(ids) * 1000, 2)
                for name, seconds in (cpu_by_program or Counter()).most_common()
            },
        }
        print(f"  throughput: {throughput}", flush=True)

        # Latency at half that rate, open loop.
        rate = max(throughput["completed_per_s"] / 2, 1.0)
        count = int(rate * latency_seconds)
        print(f"  latency: set-up of {count:,} buyers for {rate:.0f} orders/s…", flush=True)
        buyers = await make_buyers(session, base, count, listings, f"l{uuid.uuid4().hex[:6]}")
        tasks = []
        begin = time.perf_counter()
        for i, buyer in enumerate(buyers):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post_order(session, base, buyer)))
        timed = await asyncio.gather(*tasks)
        ids = {order_id for _, order_id in timed}
        latency_counts = await wait_for_sagas(orders_db, ids, within=300)
        latencies = [s for s, _ in timed]
        latency = {
            "rate_per_s": round(rate, 1),
            "orders": len(ids),
            "outcomes": latency_counts,
            "post_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "post_p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        }
        print(f"  latency: {latency}", flush=True)
    return {"throughput": throughput, "latency": latency}


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def run_sync(
    base: str,
    data_dir: Path,
    orders: int,
    concurrency: int,
    latency_seconds: int,
    profiler: Profiler | None = None,
    server_pid: int | None = None,
) -> dict:
    return asyncio.run(
        run(base, data_dir, orders, concurrency, latency_seconds, profiler, server_pid)
    )


class Profiler:
    """py-spy sampling the server during the throughput run: where the time goes, from the
    outside, without instrumenting the process. Writes collapsed stacks and summarises the
    functions with the most samples (own time, and time including callees)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        py_spy = Path(sys.executable).parent / "py-spy"
        self.process = subprocess.Popen(
            [
                str(py_spy),
                "record",
                "-p",
                str(self.pid),
                "-r",
                "200",
                "--format",
                "raw",
                "-o",
                str(self.out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        self.process.wait(30)

    def summary(self, top: int = 25) -> dict[str, Any]:
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        if not self.out.exists():
            return {"samples": 0, "own_pct": [], "inclusive_pct": []}
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            frames = [_short(frame) for frame in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n

        def share(counter: Counter[str]) -> list[tuple[str, float]]:
            return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

        return {"samples": total, "own_pct": share(own), "inclusive_pct": share(inclusive)}


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``module.func``; lines dropped to aggregate."""
    name, _, where = frame.partition(" (")
    module = where.split(":")[0].rsplit("/", 1)[-1].removesuffix(".py")
    return f"{module}.{name}"
