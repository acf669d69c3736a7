"""The payment-provider simulator: its payment API, idempotency, tunable faults, and CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from colony.cli import provider as provider_cli
from colony.payment_provider import CARD_APPROVED, CARD_DECLINED, CARD_INSUFFICIENT_FUNDS
from colony.payment_provider.api import BAD_ANSWERS
from colony.payment_provider.app import Provider, create_app
from colony.payment_provider.faults import GARBAGE, OVERSIZE_BYTES
from colony.payment_provider.server import database_path, open_provider
from colony.platform.web.server import HttpServer, free_port, wait_for_port

PAYMENT = {"amount": 5000, "currency": "EUR", "card_number": CARD_APPROVED}


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    async with open_provider(":memory:") as p:
        yield p


@pytest.fixture
async def api(provider: Provider) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://provider.test") as c:
        yield c


def keyed(key: str | None = None) -> dict[str, str]:
    return {"idempotency-key": key or uuid.uuid4().hex}


async def authorize(api: httpx.AsyncClient, key: str | None = None, **fields: Any) -> Any:
    response = await api.post("/v1/payment_intents", json={**PAYMENT, **fields}, headers=keyed(key))
    assert response.status_code == 201, response.text
    return response.json()


async def behave(api: httpx.AsyncClient, **behaviour: Any) -> None:
    response = await api.put("/admin/behaviour", json=behaviour)
    assert response.status_code == 200, response.text


async def stats(api: httpx.AsyncClient) -> Any:
    return (await api.get("/admin/stats")).json()


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


# Happy paths


async def test_authorize_capture_in_part_and_refund_all(api):
    intent = await authorize(api, metadata={"order": "o-1"})
    assert intent["status"] == "authorized" and intent["decline_code"] is None
    assert (intent["amount"], intent["currency"], intent["card_last4"]) == (5000, "EUR", "4242")
    assert intent["metadata"] == {"order": "o-1"}

    url = f"/v1/payment_intents/{intent['id']}"
    captured = await api.post(f"{url}/capture", json={"amount": 3000}, headers=keyed())
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured" and captured.json()["captured_amount"] == 3000

    first = await api.post(f"{url}/refunds", json={"amount": 1000}, headers=keyed())
    assert first.status_code == 201, first.text
    assert first.json()["payment_intent"] == intent["id"] and first.json()["amount"] == 1000
    assert (await api.get(url)).json()["status"] == "captured"
    await api.post(f"{url}/refunds", json={"amount": 2000}, headers=keyed())
    final = (await api.get(url)).json()
    assert (final["status"], final["refunded_amount"]) == ("refunded", 3000)

    totals = (await stats(api))["totals"]["EUR"]
    assert totals == {"authorized": 5000, "captured": 3000, "refunded": 3000, "net_charged": 0}


async def test_capture_of_everything_with_an_empty_body(api):
    intent = await authorize(api)
    captured = await api.post(
        f"/v1/payment_intents/{intent['id']}/capture", json={}, headers=keyed()
    )
    assert captured.json()["captured_amount"] == 5000


async def test_void_releases_an_authorization_and_nothing_follows_it(api):
    intent = await authorize(api)
    url = f"/v1/payment_intents/{intent['id']}"
    voided = await api.post(f"{url}/void", headers=keyed())
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert_problem(await api.post(f"{url}/capture", json={}, headers=keyed()), 409)
    assert_problem(await api.post(f"{url}/void", headers=keyed()), 409)
    assert_problem(await api.post(f"{url}/refunds", json={"amount": 1}, headers=keyed()), 409)


@pytest.mark.parametrize(
    ("card", "code"),
    [(CARD_DECLINED, "card_declined"), (CARD_INSUFFICIENT_FUNDS, "insufficient_funds")],
)
async def test_magic_cards_decline_as_an_answer(api, card, code):
    intent = await authorize(api, card_number=card)
    assert (intent["status"], intent["decline_code"]) == ("declined", code)
    capture = await api.post(
        f"/v1/payment_intents/{intent['id']}/capture", json={}, headers=keyed()
    )
    assert_problem(capture, 409)
    assert (await stats(api))["declines"] == 1


# Money invariants


async def test_over_capture_and_over_refund_are_refused(api):
    intent = await authorize(api)
    url = f"/v1/payment_intents/{intent['id']}"
    assert_problem(await api.post(f"{url}/refunds", json={"amount": 1}, headers=keyed()), 409)
    assert_problem(await api.post(f"{url}/capture", json={"amount": 5001}, headers=keyed()), 409)
    await api.post(f"{url}/capture", json={"amount": 2000}, headers=keyed())
    assert_problem(await api.post(f"{url}/capture", json={}, headers=keyed()), 409)
    assert_problem(await api.post(f"{url}/refunds", json={"amount": 2001}, headers=keyed()), 409)
    assert (await api.post(f"{url}/refunds", json={"amount": 2000}, headers=keyed())).is_success
    assert_problem(await api.post(f"{url}/refunds", json={"amount": 1}, headers=keyed()), 409)
    final = (await api.get(url)).json()
    assert (final["captured_amount"], final["refunded_amount"]) == (2000, 2000)


# Idempotency


async def test_same_key_and_body_replay_the_first_response(api):
    key = uuid.uuid4().hex
    first = await authorize(api, key)
    second = await authorize(api, key)
    assert first == second
    counted = await stats(api)
    assert (counted["authorizations"], counted["replays"]) == (1, 1)


async def test_a_refund_replays_instead_of_refunding_twice(api):
    intent = await authorize(api)
    url = f"/v1/payment_intents/{intent['id']}"
    await api.post(f"{url}/capture", json={}, headers=keyed())
    headers = keyed()
    first = await api.post(f"{url}/refunds", json={"amount": 500}, headers=headers)
    second = await api.post(f"{url}/refunds", json={"amount": 500}, headers=headers)
    assert first.json() == second.json()
    assert (await api.get(url)).json()["refunded_amount"] == 500


async def test_same_key_with_another_body_is_a_422(api):
    key = uuid.uuid4().hex
    await authorize(api, key)
    other = await api.post("/v1/payment_intents", json={**PAYMENT, "amount": 1}, headers=keyed(key))
    assert_problem(other, 422)
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    assert (await stats(api))["authorizations"] == 1


async def test_a_key_is_scoped_to_its_endpoint(api):
    key = uuid.uuid4().hex
    intent = await authorize(api, key)
    captured = await api.post(
        f"/v1/payment_intents/{intent['id']}/capture", json={}, headers=keyed(key)
    )
    assert captured.status_code == 200, captured.text


async def test_concurrent_requests_with_one_key_make_one_intent(api):
    headers = keyed()
    responses = await asyncio.gather(
        *(api.post("/v1/payment_intents", json=PAYMENT, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    counted = await stats(api)
    assert (counted["authorizations"], counted["replays"]) == (1, 7)


async def test_lookup_by_idempotency_key(api):
    key = uuid.uuid4().hex
    intent = await authorize(api, key)
    found = await api.get("/v1/payment_intents", params={"idempotency_key": key})
    assert found.status_code == 200 and found.json()["id"] == intent["id"]
    missing = await api.get("/v1/payment_intents", params={"idempotency_key": "never-sent"})
    assert_problem(missing, 404)
    assert_problem(await api.get("/v1/payment_intents"), 422)
    assert_problem(await api.get("/v1/payment_intents/pi_nope"), 404)


async def test_the_books_survive_a_restart(tmp_path):
    path = database_path(tmp_path)
    key = uuid.uuid4().hex
    async with open_provider(path) as provider:
        transport = httpx.ASGITransport(app=create_app(provider))
        async with httpx.AsyncClient(transport=transport, base_url="http://p.test") as api:
            first = await authorize(api, key)
    async with open_provider(path) as provider:
        transport = httpx.ASGITransport(app=create_app(provider))
        async with httpx.AsyncClient(transport=transport, base_url="http://p.test") as api:
            found = await api.get("/v1/payment_intents", params={"idempotency_key": key})
            assert found.json() == first
            assert await authorize(api, key) == first
            assert (await stats(api))["authorizations"] == 1


# Bad input


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 422),
        (json.dumps({**PAYMENT, "amount": "5000"}).encode(), 422),
        (json.dumps({**PAYMENT, "amount": -5}).encode(), 422),
        (json.dumps({**PAYMENT, "amount": 0}).encode(), 422),
        (json.dumps({**PAYMENT, "amount": 10**18}).encode(), 422),
        (json.dumps({**PAYMENT, "amount": 50.5}).encode(), 422),
        (json.dumps({**PAYMENT, "currency": "XXX"}).encode(), 422),
        (json.dumps({**PAYMENT, "card_number": "4242-4242"}).encode(), 422),
        (json.dumps({**PAYMENT, "surprise": 1}).encode(), 422),
        (json.dumps({"amount": 5000, "currency": "EUR"}).encode(), 422),
        (json.dumps({**PAYMENT, "metadata": {"k": 1}}).encode(), 422),
        (json.dumps({**PAYMENT, "metadata": {"x" * 100: "v"}}).encode(), 422),
        (b"", 400),
    ],
)
async def test_bad_authorizations_are_4xx_problems(api, body, status):
    response = await api.post(
        "/v1/payment_intents",
        content=body,
        headers={**keyed(), "content-type": "application/json"},
    )
    assert_problem(response, status)
    assert (await stats(api))["authorizations"] == 0


async def test_missing_or_bad_idempotency_key_oversize_and_wrong_media_type(api):
    assert_problem(await api.post("/v1/payment_intents", json=PAYMENT), 400)
    bad_key = {"idempotency-key": "spaces are not allowed"}
    assert_problem(await api.post("/v1/payment_intents", json=PAYMENT, headers=bad_key), 422)
    huge = {**PAYMENT, "metadata": {"k": "v" * 40_000}}
    assert_problem(await api.post("/v1/payment_intents", json=huge, headers=keyed()), 413)
    form = await api.post("/v1/payment_intents", data={"amount": "1"}, headers=keyed())
    assert_problem(form, 415)
    assert_problem(await api.post("/v1/payment_intents/pi_nope/void", headers=keyed()), 404)
    assert_problem(await api.delete("/v1/payment_intents"), 405)
    assert (await stats(api))["authorizations"] == 0


# Behaviour


async def test_decline_rate_one_declines_every_authorization(api):
    await behave(api, decline_rate=1)
    for _ in range(5):
        intent = await authorize(api)
        assert (intent["status"], intent["decline_code"]) == ("declined", "generic_decline")


async def test_an_outage_refuses_all_but_admin_quickly(api):
    await behave(api, outage=True)
    refused = await api.post("/v1/payment_intents", json=PAYMENT, headers=keyed())
    assert_problem(refused, 503)
    assert refused.headers["retry-after"] == "1"
    assert_problem(await api.get("/health"), 503)
    assert (await api.get("/admin/behaviour")).json()["outage"] is True
    await behave(api)
    assert (await api.get("/health")).status_code == 200
    counted = await stats(api)
    assert (counted["outage_rejections"], counted["authorizations"]) == (2, 0)


async def test_injected_errors_are_5xx_problems_without_effect(api):
    await behave(api, error_rate=1, seed=3)
    keys = [uuid.uuid4().hex for _ in range(6)]
    for key in keys:
        response = await api.post("/v1/payment_intents", json=PAYMENT, headers=keyed(key))
        assert response.status_code in (500, 503)
        assert_problem(response, response.status_code)
    await behave(api)
    for key in keys:
        lookup = await api.get("/v1/payment_intents", params={"idempotency_key": key})
        assert lookup.status_code == 404
    assert (await stats(api))["injected_errors"] == 6


async def test_timeouts_leave_both_outcomes_and_the_key_tells_which(api):
    await behave(api, timeout_rate=1, seed=11)
    keys = [uuid.uuid4().hex for _ in range(10)]
    for key in keys:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await api.post("/v1/payment_intents", json=PAYMENT, headers=keyed(key))
    await behave(api)
    outcomes = {}
    for key in keys:
        lookup = await api.get("/v1/payment_intents", params={"idempotency_key": key})
        outcomes[key] = lookup.json()["id"] if lookup.status_code == 200 else None
    happened = [key for key, intent in outcomes.items() if intent]
    assert 0 < len(happened) < len(keys), "the seed should give both kinds of timeout"
    counted = await stats(api)
    assert counted["timeouts_after_effect"] == len(happened) == counted["authorizations"]

    # Retrying with the same key is always safe: one intent per key, whichever case it was.
    for key, intent_id in outcomes.items():
        retried = await authorize(api, key)
        assert intent_id is None or retried["id"] == intent_id
    assert (await stats(api))["authorizations"] == len(keys)


async def test_large_latency_outlasts_a_client_deadline(api):
    await behave(api, latency={"p50_ms": 30_000, "p99_ms": 30_000})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await api.post("/v1/payment_intents", json=PAYMENT, headers=keyed())


async def test_a_seed_makes_the_faults_repeatable(api):
    async def run() -> list[str]:
        await behave(api, decline_rate=0.5, seed=42)
        return [(await authorize(api))["status"] for _ in range(12)]

    first, second = await run(), await run()
    assert first == second and {"authorized", "declined"} == set(first)


@pytest.mark.parametrize(
    "behaviour",
    [
        {"decline_rate": 1.5},
        {"error_rate": -0.1},
        {"timeout_rate": "often"},
        {"outage": "yes"},
        {"latency": {"p50_ms": -1, "p99_ms": 0}},
        {"latency": {"p50_ms": 200, "p99_ms": 100}},
        {"latency": {"p50_ms": 0, "p99_ms": 100}},
        {"latency": {"p50_ms": 10, "p99_ms": 10**9}},
        {"seed": 1.5},
        {"chaos": True},
        {"garbage_rate": 1.5},
        {"garbage_rate": 0.6, "wrong_state_rate": 0.5},
    ],
)
async def test_invalid_behaviour_is_a_422(api, behaviour):
    assert_problem(await api.put("/admin/behaviour", json=behaviour), 422)
    assert (await api.get("/admin/behaviour")).json()["decline_rate"] == 0


async def test_reset_restores_defaults_and_zeroes_counters(api):
    await behave(api, decline_rate=0.3, outage=True)
    await api.post("/v1/payment_intents", json=PAYMENT, headers=keyed())
    reset = await api.post("/admin/reset")
    assert reset.json()["outage"] is False and reset.json()["decline_rate"] == 0
    assert (await stats(api))["requests"] == 0


# Bad answers


async def test_each_bad_answer_spoils_a_success_after_its_effect(api):
    """What the client reads is wrong in its own way each time; what the provider did, and
    what a repeat with the same key replays once healed, is the true result."""
    for bad in ("garbage", "wrong_amount", "wrong_state", "oversize"):
        await behave(api, **{f"{bad}_rate": 1.0})
        key = uuid.uuid4().hex
        spoiled = await api.post("/v1/payment_intents", json=PAYMENT, headers=keyed(key))
        assert spoiled.status_code == 201, bad
        assert int(spoiled.headers["content-length"]) == len(spoiled.content)
        if bad == "garbage":
            assert spoiled.content == GARBAGE
        elif bad == "oversize":
            assert len(spoiled.content) == OVERSIZE_BYTES
            assert spoiled.json()["amount"] == 5000
        elif bad == "wrong_amount":
            assert spoiled.json()["amount"] == 5001
        else:
            assert spoiled.json()["status"] == "captured"
        await behave(api)
        replayed = await authorize(api, key)
        assert (replayed["amount"], replayed["status"]) == (5000, "authorized"), bad
    counted = await stats(api)
    assert (counted["authorizations"], counted["bad_answers"]) == (4, 4)


async def test_refusals_and_lookups_of_nothing_are_never_spoiled(api):
    intent = await authorize(api, card_number=CARD_DECLINED)
    await behave(api, garbage_rate=1.0)
    url = f"/v1/payment_intents/{intent['id']}"
    assert_problem(await api.post(f"{url}/capture", json={}, headers=keyed()), 409)
    missing = await api.get("/v1/payment_intents", params={"idempotency_key": "never"})
    assert_problem(missing, 404)
    assert (await api.get(url)).content == GARBAGE  # a success, spoiled like any other
    assert (await stats(api))["bad_answers"] == 1


async def test_a_slow_body_sends_half_then_hangs(served):
    async with httpx.AsyncClient(base_url=served) as client:
        await client.put("/admin/behaviour", json={"slow_body_rate": 1.0})
        key = uuid.uuid4().hex
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/payment_intents", json=PAYMENT, headers=keyed(key), timeout=0.5)
        await client.put("/admin/behaviour", json={})
        found = await client.get("/v1/payment_intents", params={"idempotency_key": key})
        assert found.json()["status"] == "authorized"


async def test_a_seed_without_bad_answers_keeps_its_sequence(api):
    """Bad answers draw only while one is set: seeds chosen for the older faults still hold."""

    async def statuses(**behaviour: Any) -> list[str]:
        await behave(api, decline_rate=0.5, seed=7, **behaviour)
        return [(await authorize(api))["status"] for _ in range(8)]

    assert await statuses() == await statuses(garbage_rate=0.0)


# The CLI and the process


@pytest.fixture
async def served(provider: Provider) -> AsyncIterator[str]:
    server = HttpServer(create_app(provider), "127.0.0.1", free_port())
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def cli(*args: str) -> Any:
    # In a thread: the CLI blocks on urllib while this loop serves its requests.
    return await asyncio.to_thread(CliRunner().invoke, provider_cli.app, list(args))


async def test_cli_sets_shows_and_resets_the_behaviour(served):
    changed = await cli("set", "--url", served, "--decline-rate", "0.25", "--outage")
    assert changed.exit_code == 0, changed.output
    latency = await cli("set", "--url", served, "--latency-ms-p50", "5", "--latency-ms-p99", "50")
    assert latency.exit_code == 0, latency.output
    shown = await cli("status", "--url", served)
    assert shown.exit_code == 0, shown.output
    behaviour = json.loads(shown.stdout)
    assert behaviour["decline_rate"] == 0.25 and behaviour["outage"] is True
    assert behaviour["latency"] == {"p50_ms": 5.0, "p99_ms": 50.0}

    refused = await cli("set", "--url", served, "--error-rate", "2")
    assert refused.exit_code == 1 and "422" in refused.output
    assert (await cli("set", "--url", served)).exit_code == 2

    assert (await cli("reset", "--url", served)).exit_code == 0
    after = json.loads((await cli("status", "--url", served)).stdout)
    assert after["outage"] is False and after["decline_rate"] == 0
    assert json.loads((await cli("stats", "--url", served)).stdout)["requests"] == 0


async def test_cli_sets_the_bad_answers(served):
    changed = await cli("set", "--url", served, "--garbage-rate", "0.1", "--slow-body-rate", "0.2")
    assert changed.exit_code == 0, changed.output
    more = await cli("set", "--url", served, "--wrong-amount-rate", "0.3", "--oversize-rate", "0")
    assert more.exit_code == 0, more.output
    behaviour = json.loads((await cli("status", "--url", served)).stdout)
    rates = {kind: behaviour[f"{kind}_rate"] for kind in BAD_ANSWERS}
    assert rates == {
        "garbage": 0.1,
        "wrong_amount": 0.3,
        "wrong_state": 0.0,
        "oversize": 0.0,
        "slow_body": 0.2,
    }
    too_many = await cli("set", "--url", served, "--wrong-state-rate", "0.5")
    assert too_many.exit_code == 1 and "422" in too_many.output


async def test_cli_tunes_the_provider_the_marketplace_uses(served, monkeypatch):
    """One setting, COLONY_PAYMENT_PROVIDER_URL, names the provider for the marketplace and
    for every ``colony provider`` command; ``--url`` names another."""
    monkeypatch.setenv("COLONY_PAYMENT_PROVIDER_URL", served)
    monkeypatch.setenv("COLONY_PROVIDER_URL", f"http://127.0.0.1:{free_port()}")
    changed = await cli("set", "--decline-rate", "0.5")
    assert changed.exit_code == 0, changed.output
    async with httpx.AsyncClient(base_url=served) as client:
        assert (await client.get("/admin/behaviour")).json()["decline_rate"] == 0.5
    assert json.loads((await cli("status")).stdout)["decline_rate"] == 0.5
    assert json.loads((await cli("stats")).stdout)["requests"] == 0
    assert (await cli("reset")).exit_code == 0
    assert json.loads((await cli("status")).stdout)["decline_rate"] == 0

    elsewhere = f"http://127.0.0.1:{free_port()}"
    overridden = await cli("status", "--url", elsewhere)
    assert overridden.exit_code == 1 and elsewhere in overridden.output


def test_every_provider_command_has_help():
    for command in ("serve", "status", "stats", "set", "reset"):
        result = CliRunner().invoke(provider_cli.app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


async def test_cli_says_when_no_provider_answers():
    result = await cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1 and "No payment provider" in result.output


async def test_serve_listens_where_the_marketplace_looks(tmp_path):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "colony", "provider", "serve", "--data-dir", str(tmp_path)),
        env={
            **os.environ,
            "COLONY_LOG_LEVEL": "warning",
            "COLONY_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{port}",
        },
    )
    try:
        await wait_for_port("127.0.0.1", port)
        health = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/health")
        assert health == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)


async def test_python_dash_m_runs_it_with_its_books_on_disk(tmp_path):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "colony.payment_provider"),
        *("--port", str(port), "--data-dir", str(tmp_path)),
        env={**os.environ, "COLONY_LOG_LEVEL": "warning"},
    )
    try:
        await wait_for_port("127.0.0.1", port)
        health = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/health")
        assert health == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    assert (tmp_path / "payment_provider.db").exists()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
