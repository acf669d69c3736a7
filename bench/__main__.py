"""``make bench``: browse, checkout, start-up time, idle memory and the console, in one run.

Reproduce with ``make bench`` (or ``.venv/bin/python -m bench --help``). Figures are medians of
the repeated runs; the bare-Starlette ratio is measured in the same run on the same server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import console
from colony.platform.web.server import free_port

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
BROWSE_BAR_RPS = 5000
BROWSE_BAR_P99_MS = 50
STARTUP_BAR_S = 3.0
RSS_BAR_MB = 300
CHECKOUT_BAR_OPS = 300
CHECKOUT_BAR_P99_MS = 100
DISTRIBUTED_CHECKOUT_BAR_OPS = 100
BASELINE_BAR = 1.10  # a change may cost checkout at most 10 % more CPU than the code before it
BROWSE_BASELINE_BAR = 0.90  # ... and browse at most 10 % of its throughput


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentiles = {
        p: _ms(value) for p, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": percentiles["50"],
        "p99_ms": percentiles["99"],
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_ready(
    url: str, process: subprocess.Popen, timeout: float = 120, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{url} not ready after {timeout} s")


def fresh_copy(seeded: Path, name: str) -> Path:
    copy = seeded / "runs" / name
    shutil.copytree(seeded, copy, ignore=shutil.ignore_patterns("runs"))
    return copy


def log_tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_marketplace(
    data_dir: Path, port: int, options: tuple[str, ...] = (), **env: str
) -> tuple[subprocess.Popen, float]:
    environ = {
        **os.environ,
        "COLONY_DATA_DIR": str(data_dir),
        "COLONY_PORT": str(port),
        "COLONY_LOG_LEVEL": "warning",
        **env,
    }
    started = time.perf_counter()
    # To a file, not a pipe: a pipe nobody reads fills up, and then every process writing a
    # log line to it stops.
    with server_log(data_dir).open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "colony"), "up", *options],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    wait_ready(f"http://127.0.0.1:{port}/health/ready", process, log=server_log(data_dir))
    return process, time.perf_counter() - started


def server_log(data_dir: Path) -> Path:
    return data_dir / "colony-up.log"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=int, default=2000, help="listings to seed")
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3, help="load runs per configuration")
    parser.add_argument("--orders", type=int, default=3000, help="orders in the checkout run")
    parser.add_argument("--checkout-concurrency", type=int, default=64)
    parser.add_argument("--latency-seconds", type=int, default=10)
    parser.add_argument(
        "--replicas", default="", help="replicas in the multi-process run, e.g. orders=2"
    )
    parser.add_argument(
        "--only",
        choices=("all", "browse", "checkout", "distributed", "one-process", "console"),
        default="all",
        help="checkout: in both topologies; distributed or one-process: that topology alone;"
        " console: its pages with 10,000 traces stored",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip py-spy on the checkout throughput run"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the src/ folder of another checkout (e.g. the commit before a change): checkout"
        " runs alternate between it and this code, in both topologies (with --only browse:"
        " browse runs, one process), and report the ratio",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations with --baseline")
    args = parser.parse_args()
    if args.only in ("all", "browse") and shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: install it from the OS packages (apt-get install wrk).")
    elif args.only == "console":  # in this process, on data of its own: nothing to seed
        report({"command": console.COMMAND, "console": console.run()})
        return

    results: dict = {
        "command": "make bench",
        "size": args.size,
        "seconds": args.seconds,
        "connections": args.connections,
        "runs": args.runs,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="colony-bench-") as tmp:
        data_dir = Path(tmp)
        print(f"Seeding {args.size:,} listings…", flush=True)
        subprocess.run(
            [str(BIN / "colony"), "seed", "--size", str(args.size)],
            check=True,
            env={**os.environ, "COLONY_DATA_DIR": str(data_dir), "COLONY_LOG_LEVEL": "warning"},
            stdout=subprocess.DEVNULL,
        )

        if args.baseline is not None:
            if args.only == "browse":
                results["baseline_browse"] = compare_browse(data_dir, args)
            else:
                results["baseline"] = compare(data_dir, args)
            report(results)
            return
        if args.only in ("all", "checkout", "distributed", "one-process"):
            # Each topology starts from the seeded data alone: not, say, behind the courier
            # moving the first run's thousands of parcels.
            if args.only != "distributed":
                results["checkout"] = checkout_run(fresh_copy(data_dir, "one"), args)
            if args.only != "one-process":
                results["checkout_distributed"] = checkout_run(
                    fresh_copy(data_dir, "distributed"), args, distributed=True
                )
        if args.only in ("checkout", "distributed", "one-process"):
            report(results)
            return

        startups, rss = [], []
        for _ in range(3):
            port = free_port()
            process, seconds = start_marketplace(data_dir, port)
            time.sleep(1.0)
            rss.append(rss_mb(process.pid))
            startups.append(seconds)
            stop(process)
        results["startup_s"] = statistics.median(startups)
        results["idle_rss_mb"] = statistics.median(rss)

        for label, env in (
            ("browse", {}),
            ("browse_uncached", {"COLONY_SEARCH_CACHE_SECONDS": "0"}),
        ):
            port = free_port()
            process, _ = start_marketplace(data_dir, port, **env)
            url = f"http://127.0.0.1:{port}/"
            wrk(url + "api/v1/listings?q=wireless&category=electronics", 2, args.connections)
            runs = [
                wrk(url, args.seconds, args.connections, HERE / "browse.lua")
                for _ in range(args.runs)
            ]
            stop(process)
            results[label] = _median(runs)
            print(f"{label}: {results[label]}", flush=True)

    port = free_port()
    hello = subprocess.Popen([sys.executable, str(HERE / "hello.py"), str(port)])
    wait_ready(f"http://127.0.0.1:{port}/", hello)
    runs = [
        wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections) for _ in range(args.runs)
    ]
    hello.terminate()
    hello.wait()
    results["starlette_hello"] = _median(runs)
    results["browse_to_hello_ratio"] = round(
        results["browse"]["rps"] / results["starlette_hello"]["rps"], 3
    )
    results["console"] = console.run()
    report(results)


def compare(data_dir: Path, args: argparse.Namespace) -> dict:
    """Checkout CPU per 1,000 orders, this code against ``args.baseline``, in both topologies:
    the two alternate round by round on the same seeded data, so a noisy moment of a shared
    machine falls on both rather than on one."""
    baseline = str(args.baseline.resolve())
    runs: dict[str, list[dict]] = {}
    # With --only distributed, the multi-process topology alone (the one a change to calls
    # between processes is judged by), in half the time.
    topologies = {"distributed": (True,), "one-process": (False,)}.get(args.only, (False, True))
    for round_ in range(args.rounds):
        for distributed in topologies:
            for code, env in (("baseline", {"PYTHONPATH": baseline}), ("current", {})):
                key = f"{code}{'_distributed' if distributed else ''}"
                copy = fresh_copy(data_dir, f"{key}-{round_}")
                measured = checkout_run(copy, args, distributed, **env)
                runs.setdefault(key, []).append(measured)
    summary: dict = {"baseline_src": baseline, "rounds": args.rounds}
    for topology in ("" if not distributed else "_distributed" for distributed in topologies):
        cpu = {
            code: statistics.median(
                r["throughput"]["cpu_s_per_1000_orders"] for r in runs[f"{code}{topology}"]
            )
            for code in ("baseline", "current")
        }
        until_idle = {
            code: statistics.median(
                r["throughput"]["cpu_s_per_1000_orders_until_idle"]
                for r in runs[f"{code}{topology}"]
            )
            for code in ("baseline", "current")
        }
        rate = {
            code: statistics.median(
                r["throughput"]["completed_per_s"] for r in runs[f"{code}{topology}"]
            )
            for code in ("baseline", "current")
        }
        name = "one_process" if not topology else "one_process_per_service"
        summary[name] = {
            "cpu_s_per_1000_orders": cpu,
            "cpu_ratio_current_to_baseline": round(cpu["current"] / cpu["baseline"], 3),
            "cpu_s_per_1000_orders_until_idle": until_idle,
            "cpu_until_idle_ratio_current_to_baseline": round(
                until_idle["current"] / until_idle["baseline"], 3
            ),
            "completed_orders_per_s": rate,
            "runs_cpu": {
                code: [r["throughput"]["cpu_s_per_1000_orders"] for r in runs[f"{code}{topology}"]]
                for code in ("baseline", "current")
            },
            "runs_cpu_until_idle": {
                code: [
                    r["throughput"]["cpu_s_per_1000_orders_until_idle"]
                    for r in runs[f"{code}{topology}"]
                ]
                for code in ("baseline", "current")
            },
            "runs_cpu_without_third_parties": {
                code: [
                    r["throughput"]["cpu_s_per_1000_orders_without_third_parties"]
                    for r in runs[f"{code}{topology}"]
                ]
                for code in ("baseline", "current")
            },
        }
        print(f"{name}: {summary[name]}", flush=True)
    return summary


def compare_browse(data_dir: Path, args: argparse.Namespace) -> dict:
    """Browse throughput (the storefront's mix, ``browse.lua``), this code against
    ``args.baseline``, alternating round by round on the same seeded data, one process."""
    baseline = str(args.baseline.resolve())
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    for round_ in range(args.rounds):
        for code, env in (("baseline", {"PYTHONPATH": baseline}), ("current", {})):
            port = free_port()
            process, _ = start_marketplace(
                fresh_copy(data_dir, f"browse-{code}-{round_}"), port, **env
            )
            url = f"http://127.0.0.1:{port}/"
            wrk(url, 2, args.connections, HERE / "browse.lua")  # warm: caches, connections
            runs[code].append(wrk(url, args.seconds, args.connections, HERE / "browse.lua"))
            stop(process)
            print(
                f"browse {code} round {round_ + 1}: {runs[code][-1]['rps']} requests/s", flush=True
            )
    rps = {code: statistics.median(r["rps"] for r in runs[code]) for code in runs}
    summary = {
        "baseline_src": baseline,
        "rounds": args.rounds,
        "rps": rps,
        "rps_ratio_current_to_baseline": round(rps["current"] / rps["baseline"], 3),
        "runs_rps": {code: [r["rps"] for r in runs[code]] for code in runs},
    }
    print(f"browse: {summary}", flush=True)
    return summary


def checkout_run(
    data_dir: Path, args: argparse.Namespace, distributed: bool = False, **env: str
) -> dict:
    """The checkout workload against ``colony up`` (one process, or ``--distributed``: one
    process per service), the provider beside it.

    Buyers' accounts use the fast password hash: registering thousands is set-up, not what
    is measured."""
    from bench import checkout

    print(f"Checkout, {'one process per service' if distributed else 'one process'}…", flush=True)
    port = free_port()
    options: tuple[str, ...] = ("--distributed",) if distributed else ()
    if distributed and args.replicas:
        options += ("--replicas", args.replicas)
    process, _ = start_marketplace(
        data_dir,
        port,
        options,
        COLONY_PASSWORD_HASH_COST="fast",
        COLONY_PAYMENT_PROVIDER_URL=f"http://127.0.0.1:{free_port()}",
        COLONY_SMTP_PORT=str(free_port()),
        COLONY_MAIL_SINK_HTTP_PORT=str(free_port()),
        **env,
    )
    profiler = None
    if not distributed and not args.no_profile and not env and (BIN / "py-spy").exists():
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        profiler = checkout.Profiler(process.pid, out / "checkout-profile.txt")
    try:
        measured = checkout.run_sync(
            f"http://127.0.0.1:{port}",
            data_dir,
            args.orders,
            args.checkout_concurrency,
            args.latency_seconds,
            profiler,
            server_pid=process.pid,
        )
    except Exception:
        print(f"The server's last log lines:\n{log_tail(server_log(data_dir))}", flush=True)
        raise
    finally:
        stop(process)
    if profiler is not None:
        measured["profile"] = profiler.summary()
        print("Where the server's time went (share of samples, py-spy):")
        for name, pct in measured["profile"]["inclusive_pct"]:
            print(f"  {pct:5.1f}%  {name}")
    return measured


def _median(runs: list[dict]) -> dict:
    return {
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "runs_rps": [r["rps"] for r in runs],
    }


def report(results: dict) -> None:
    rows = []
    if "checkout_distributed" in results:
        throughput = results["checkout_distributed"]["throughput"]
        latency = results["checkout_distributed"]["latency"]
        single = results.get("checkout", {}).get("throughput", {})
        rows += [
            (
                "checkout, one process per service: orders/s",
                f"{throughput['completed_per_s']:,.0f} orders/s of {throughput['orders']:,}"
                f" {throughput['outcomes']}",
                f">= {DISTRIBUTED_CHECKOUT_BAR_OPS} orders/s",
                throughput["completed_per_s"] >= DISTRIBUTED_CHECKOUT_BAR_OPS
                and throughput["outcomes"].get("completed") == throughput["orders"],
            ),
            (
                "  its POST latency, at full load / half rate",
                f"p50 {throughput['post_p50_ms']} / {latency['post_p50_ms']} ms,"
                f" p99 {throughput['post_p99_ms']} / {latency['post_p99_ms']} ms",
                "(for reference)",
                True,
            ),
            (
                "  CPU seconds per 1,000 orders",
                f"{throughput['cpu_s_per_1000_orders']} s (one process:"
                f" {single.get('cpu_s_per_1000_orders', '-')} s); without the provider and"
                f" mail sink {throughput['cpu_s_per_1000_orders_without_third_parties']} s"
                f" ({single.get('cpu_s_per_1000_orders_without_third_parties', '-')} s)",
                "(the cost of distribution)",
                True,
            ),
        ]
    if "checkout" in results:
        throughput = results["checkout"]["throughput"]
        latency = results["checkout"]["latency"]
        rows += [
            (
                "checkout: completed orders/s (3-item carts)",
                f"{throughput['completed_per_s']:,.0f} orders/s of {throughput['orders']:,}"
                f" {throughput['outcomes']}",
                f">= {CHECKOUT_BAR_OPS} orders/s",
                throughput["completed_per_s"] >= CHECKOUT_BAR_OPS
                and throughput["outcomes"].get("completed") == throughput["orders"],
            ),
            (
                f"checkout POST at {latency['rate_per_s']:.0f} orders/s (half rate)",
                f"p50 {latency['post_p50_ms']} ms, p99 {latency['post_p99_ms']} ms",
                f"p99 < {CHECKOUT_BAR_P99_MS} ms",
                latency["post_p99_ms"] < CHECKOUT_BAR_P99_MS,
            ),
            (
                "  CPU seconds per 1,000 orders",
                f"{throughput['cpu_s_per_1000_orders']} s",
                "(for reference)",
                True,
            ),
        ]
    if "browse" in results:
        rows += _browse_rows(results)
    if "console" in results:
        rows += console.rows(results["console"])
    for name in ("one_process", "one_process_per_service"):
        if name in results.get("baseline", {}):
            compared = results["baseline"][name]
            cpu = compared["cpu_s_per_1000_orders"]
            idle = compared["cpu_s_per_1000_orders_until_idle"]
            ratio = compared["cpu_until_idle_ratio_current_to_baseline"]
            rows += [
                (
                    f"checkout CPU/1,000 orders vs baseline, {name.replace('_', ' ')}",
                    f"{cpu['current']} s against {cpu['baseline']} s",
                    f"ratio {compared['cpu_ratio_current_to_baseline']} (<= {BASELINE_BAR})",
                    compared["cpu_ratio_current_to_baseline"] <= BASELINE_BAR,
                ),
                (
                    "  the same, until idle (the orders' mails and courier steps included)",
                    f"{idle['current']} s against {idle['baseline']} s",
                    f"ratio {ratio} (<= {BASELINE_BAR})",
                    ratio <= BASELINE_BAR,
                ),
            ]
    if "baseline_browse" in results:
        compared = results["baseline_browse"]
        rps = compared["rps"]
        rows.append(
            (
                "browse requests/s vs baseline, one process",
                f"{rps['current']} against {rps['baseline']}",
                f"ratio {compared['rps_ratio_current_to_baseline']} (>= {BROWSE_BASELINE_BAR})",
                compared["rps_ratio_current_to_baseline"] >= BROWSE_BASELINE_BAR,
            )
        )
    _print(rows, results)


def _browse_rows(results: dict) -> list:
    browse, hello = results["browse"], results["starlette_hello"]
    return [
        (
            "browse (search q + category, 20/page, cached)",
            f"{browse['rps']:,.0f} req/s, p50 {browse['p50_ms']} ms, p99 {browse['p99_ms']} ms",
            f">= {BROWSE_BAR_RPS} req/s, p99 < {BROWSE_BAR_P99_MS} ms",
            browse["rps"] >= BROWSE_BAR_RPS
            and browse["p99_ms"] < BROWSE_BAR_P99_MS
            and browse["non_2xx"] == 0,
        ),
        (
            "browse, search cache off",
            f"{results['browse_uncached']['rps']:,.0f} req/s, "
            f"p99 {results['browse_uncached']['p99_ms']} ms",
            "(for reference)",
            True,
        ),
        (
            "bare Starlette hello-world, same server",
            f"{hello['rps']:,.0f} req/s, p99 {hello['p99_ms']} ms",
            f"browse/hello = {results['browse_to_hello_ratio']}",
            True,
        ),
        (
            "start-up to ready, data present",
            f"{results['startup_s']:.2f} s",
            f"< {STARTUP_BAR_S} s",
            results["startup_s"] < STARTUP_BAR_S,
        ),
        (
            "idle resident memory after seeding",
            f"{results['idle_rss_mb']:.0f} MB",
            f"< {RSS_BAR_MB} MB",
            results["idle_rss_mb"] < RSS_BAR_MB,
        ),
    ]


def _print(rows: list, results: dict) -> None:
    print()
    for name, value, bar, ok in rows:
        print(f"{'PASS' if ok else 'MISS'}  {name:<48} {value:<44} {bar}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nWritten to {path}")


if __name__ == "__main__":
    main()
