"""The ``colony`` command: seed, up (start, stop cleanly, restart with data kept) and dlq."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

from colony.platform.web.server import free_port

COLONY = str(Path(sys.executable).parent / "colony")


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COLONY_DATA_DIR": str(data_dir),
        "COLONY_LOG_LEVEL": "warning",
        "COLUMNS": "200",
    }
    return subprocess.run([COLONY, *args], env=env, capture_output=True, text=True, timeout=120)


def titles(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "catalog.db") as db:
        return [r[0] for r in db.execute("SELECT title FROM listings ORDER BY title")]


def test_every_command_has_help():
    for args in ([], ["seed"], ["up"], ["dlq"], ["dlq", "list"], ["dlq", "replay"]):
        result = subprocess.run([COLONY, *args, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage" in result.stdout, args


def test_seed_is_deterministic_and_runs_once(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    result = run(first, "seed", "--size", "60")
    assert result.returncode == 0, result.stderr
    assert "Seeded 60 listings" in result.stderr
    assert "seller01@colony.example" in result.stderr
    assert run(second, "seed", "--size", "60").returncode == 0
    assert titles(first) == titles(second) and len(titles(first)) == 60
    with sqlite3.connect(first / "catalog.db") as db:
        sellers = db.execute("SELECT count(DISTINCT seller_id) FROM listings").fetchone()[0]
        categories = db.execute("SELECT count(DISTINCT category) FROM listings").fetchone()[0]
    assert sellers == 20 and categories >= 10
    with sqlite3.connect(first / "inventory.db") as db:
        bad = db.execute(
            "SELECT count(*) FROM stock WHERE available + reserved + sold"
            " != received OR available < 0"
        ).fetchone()[0]
    assert bad == 0
    again = run(first, "seed", "--size", "60")
    assert "already seeded" in again.stderr and len(titles(first)) == 60


def test_seed_rejects_a_bad_size(tmp_path):
    result = run(tmp_path, "seed", "--size", "0")
    assert result.returncode == 2


def test_dead_letters_are_listed_shown_and_replayed(tmp_path):
    assert run(tmp_path, "seed", "--size", "20").returncode == 0
    assert "No dead letters" in run(tmp_path, "dlq", "list").stderr
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        listing_id, seller_id = db.execute("SELECT id, seller_id FROM listings LIMIT 1").fetchone()
    message = {
        "id": "msg-lost-1",
        "topic": "catalog.listing.created",
        "key": listing_id,
        "payload": {
            "listing_id": listing_id,
            "seller_id": seller_id,
            "title": "t",
            "category": "books",
            "price_minor": 1,
            "currency": "EUR",
        },
        "headers": {},
        "created_at": "2026-01-01T00:00:00+00:00",
        "source": "catalog",
    }
    with sqlite3.connect(tmp_path / "inventory.db") as db:
        db.execute("DELETE FROM stock_movements WHERE listing_id = ?", (listing_id,))
        db.execute("DELETE FROM stock WHERE listing_id = ?", (listing_id,))
        db.execute(
            "INSERT INTO dead_letters (id, consumer, message_id, topic, message, error, attempts,"
            " failed_at) VALUES ('dl-1', 'inventory', 'msg-lost-1', 'catalog.listing.created',"
            " ?, 'RuntimeError: boom', 5, '2026-01-01T00:00:00+00:00')",
            (msgspec.json.encode(message),),
        )
    listed = run(tmp_path, "dlq", "list")
    assert "dl-1" in listed.stderr and "catalog.listing.created" in listed.stderr
    shown = run(tmp_path, "dlq", "show", "dl-1")
    assert shown.returncode == 0 and listing_id in shown.stderr
    replayed = run(tmp_path, "dlq", "replay", "dl-1")
    assert replayed.returncode == 0, replayed.stderr
    with sqlite3.connect(tmp_path / "inventory.db") as db:
        assert (
            db.execute("SELECT count(*) FROM stock WHERE listing_id = ?", (listing_id,)).fetchone()[
                0
            ]
            == 1
        )
    assert "No dead letters" in run(tmp_path, "dlq", "list").stderr
    assert run(tmp_path, "dlq", "show", "nope").returncode == 1


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"colony up exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=1) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.1)
    pytest.fail("colony up did not become ready")


def test_up_serves_stops_cleanly_and_keeps_its_data(tmp_path):
    port = free_port()
    env = {**os.environ, "COLONY_DATA_DIR": str(tmp_path), "COLONY_PORT": str(port)}
    for start in ("first", "second"):
        process = subprocess.Popen(
            [COLONY, "up", "--seed-size", "40"],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            assert wait_ready(url, process)["status"] == "ready"
            with urllib.request.urlopen(url + "/api/v1/listings?page_size=1") as response:
                assert json.loads(response.read())["total"] == 40
            with urllib.request.urlopen(url + "/") as response:
                assert response.status == 200
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "Stopped." in stderr
        assert ("seeding demo data" in stderr) == (start == "first")


def test_a_second_up_on_a_taken_port_is_refused(tmp_path):
    port = free_port()
    env = {**os.environ, "COLONY_DATA_DIR": str(tmp_path), "COLONY_PORT": str(port)}
    first = subprocess.Popen(
        [COLONY, "up", "--seed-size", "20"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", first)
        second = subprocess.run([COLONY, "up"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "already in use" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_verify_that_cannot_read_a_database_says_so_with_its_own_exit_code(tmp_path):
    (tmp_path / "payments.db").mkdir(parents=True)  # not a database SQLite can open
    result = run(tmp_path, "verify")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "could not check" in result.stderr
