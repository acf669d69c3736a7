"""OWASP API2:2023, broken authentication: attacks on log-in, registration and tokens, made
through the gateway as an attacker would make them.

Each attacker comes from an address of its own: the throttle counts per address, and the
other tests' client is 127.0.0.1. Loopback addresses are among them on purpose: loopback is
exempt from the edge's rate limit, but not from log-in throttling.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.types import ASGIApp

from colony.marketplace import Marketplace
from colony.services.gateway.app import create_app
from colony.services.gateway.auth import REVOCATIONS_SYNC_SECONDS, Authenticator
from colony.services.identity.domain import PER_ACCOUNT, PER_ACCOUNT_AND_ADDRESS, PER_ADDRESS
from colony.services.identity.passwords import Passwords
from conftest import Session, sign_up, unique_email
from owasp_tests.refusals import retry_after

Connect = Callable[..., httpx.AsyncClient]
"""A client connecting from an address (and to an app, by default the marketplace's)."""
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_hosts = itertools.count(1)


def loopback_address() -> str:
    n = next(_hosts)
    return f"127.0.{n // 250 + 1}.{n % 250 + 2}"


def remote_address() -> str:
    n = next(_hosts)
    return f"198.18.{n // 250}.{n % 250 + 2}"


@pytest.fixture
async def connect(marketplace: Marketplace) -> AsyncIterator[Connect]:
    """Clients of the marketplace's gateway, each connecting from the address given."""
    clients: list[httpx.AsyncClient] = []

    def at(address: str, app: ASGIApp | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app or marketplace.app, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://colony.test")
        clients.append(client)
        return client

    yield at
    for client in clients:
        await client.aclose()


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/tokens", json={"email": email, "password": password})


# --- log-in throttling ------------------------------------------------------------------------


async def test_guessing_a_password_is_held_back_ever_longer_even_from_loopback(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    email = owner.account["email"]
    attacker = connect(loopback_address())
    for _ in range(PER_ACCOUNT_AND_ADDRESS.free):
        assert (await log_in(attacker, email, "wrong guess 1")).status_code == 401

    # Held back now, the right password included: it tells the guesser nothing.
    first_wait = retry_after(await log_in(attacker, email, owner.password))
    assert retry_after(await log_in(attacker, email, "wrong guess 2")) <= first_wait

    await asyncio.sleep(first_wait + 0.05)
    assert (await log_in(attacker, email, "wrong guess 3")).status_code == 401
    second_wait = retry_after(await log_in(attacker, email, owner.password))
    assert second_wait > first_wait

    # The owner, from an address of their own, is not held back by the guesser's failures.
    assert (await log_in(connect(remote_address()), email, owner.password)).status_code == 200


async def test_a_successful_log_in_starts_the_count_again(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    email = owner.account["email"]
    clumsy = connect(remote_address())
    for _ in range(2):
        for _ in range(PER_ACCOUNT_AND_ADDRESS.free - 1):
            assert (await log_in(clumsy, email, "mistyped it")).status_code == 401
        assert (await log_in(clumsy, email, owner.password)).status_code == 200


async def test_a_burst_of_parallel_guesses_is_counted_one_by_one(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    attacker = connect(remote_address())
    answers = await asyncio.gather(
        *(log_in(attacker, owner.account["email"], f"guess {n}") for n in range(30))
    )
    statuses = [answer.status_code for answer in answers]
    # At most the free attempts had their password checked; every other one waits.
    assert statuses.count(401) <= PER_ACCOUNT_AND_ADDRESS.free
    assert statuses.count(429) == len(statuses) - statuses.count(401)


async def test_guessers_on_many_addresses_do_not_lock_the_owner_out(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)  # it logged in from 127.0.0.1: a familiar address
    email = owner.account["email"]
    botnet = [connect(remote_address()) for _ in range(PER_ACCOUNT.free)]
    for bot in botnet:
        assert (await log_in(bot, email, "a guess")).status_code == 401

    # Past the account's looser bound, addresses it never logged in from wait...
    assert retry_after(await log_in(connect(remote_address()), email, owner.password))
    # ...but its owner's own does not: the attackers cannot lock the owner out.
    assert (await log_in(client, email, owner.password)).status_code == 200


async def test_one_address_spraying_many_accounts_is_held_back(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    sprayer = connect(remote_address())
    for n in range(PER_ADDRESS.free):
        # Unknown e-mails count like known ones: the 429 says nothing about who has an account.
        answer = await log_in(sprayer, unique_email(f"spray{n}"), "Summer2024!")
        assert answer.status_code == 401, answer.text
    assert retry_after(await log_in(sprayer, owner.account["email"], owner.password))
    # Only that address waits.
    elsewhere = connect(remote_address())
    assert (await log_in(elsewhere, owner.account["email"], owner.password)).status_code == 200


async def test_log_ins_that_succeed_do_not_count_against_their_address(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    office = connect(remote_address())  # many people behind one NAT
    for n in range(PER_ADDRESS.free - 1):
        answer = await log_in(office, unique_email(f"typo{n}"), "mistyped")
        assert answer.status_code == 401, answer.text
    for _ in range(3):
        assert (await log_in(office, owner.account["email"], owner.password)).status_code == 200
    # The failures before still count: one more and the address waits.
    assert (await log_in(office, unique_email("typo"), "mistyped")).status_code == 401
    assert retry_after(await log_in(office, owner.account["email"], owner.password))


# --- no account enumeration -------------------------------------------------------------------


async def test_log_in_answers_alike_for_an_unknown_e_mail_and_a_wrong_password(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    known = connect(remote_address())
    unknown = connect(remote_address())
    unknown_email = unique_email("nobody")
    for _ in range(PER_ACCOUNT_AND_ADDRESS.free):
        wrong = await log_in(known, owner.account["email"], "not the password")
        missing = await log_in(unknown, unknown_email, "not the password")
        assert wrong.status_code == missing.status_code == 401
        assert _without_trace(wrong.json()) == _without_trace(missing.json())
    assert retry_after(await log_in(known, owner.account["email"], "x" * 8)) == retry_after(
        await log_in(unknown, unknown_email, "x" * 8)
    )


async def test_an_unknown_e_mail_takes_as_long_to_refuse_as_a_wrong_password() -> None:
    # The production hash cost: with it, skipping the hash for an unknown e-mail would answer
    # in microseconds instead of tens of milliseconds.
    passwords = Passwords("default")
    stored = await passwords.hash("the real password")

    async def seconds(stored_hash: str | None) -> float:
        started = time.perf_counter()
        assert not await passwords.verify(stored_hash, "a wrong password")
        return time.perf_counter() - started

    wrong = statistics.median([await seconds(stored) for _ in range(5)])
    unknown = statistics.median([await seconds(None) for _ in range(5)])
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


async def test_registering_a_taken_e_mail_answers_as_a_new_one_and_changes_nothing(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    attacker = connect(remote_address())
    taken = await attacker.post(
        "/api/v1/accounts",
        json={
            "email": owner.account["email"].upper(),
            "password": "the attacker's own",
            "name": "Mallory",
        },
    )
    fresh = await attacker.post(
        "/api/v1/accounts",
        json={"email": unique_email("fresh"), "password": "the attacker's own", "name": "Mallory"},
    )
    assert taken.status_code == fresh.status_code == 201, taken.text
    assert taken.json().keys() == fresh.json().keys()
    assert taken.json()["id"] not in (owner.id, fresh.json()["id"])
    assert taken.json()["email"] == owner.account["email"]

    # The account is the owner's as before: its password works, the attacker's does not.
    home = connect(remote_address())
    assert (await log_in(home, owner.account["email"], "the attacker's own")).status_code == 401
    me = await client.get("/api/v1/me", headers=(await _session(home, owner)).headers)
    assert me.json()["name"] == owner.account["name"]


# --- password policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password1", "most common"),
        ("Iloveyou123", "most common"),
        ("qwertyuiop", "most common"),
        ("zzzzzzzzzzzz", "repeated"),
        ("short", "length >= 8"),
        ("x" * 200 + "y" * 57, "length <= 256"),
    ],
)
async def test_weak_passwords_are_refused_with_the_reason(
    client: httpx.AsyncClient, password: str, why: str
) -> None:
    response = await client.post(
        "/api/v1/accounts",
        json={"email": unique_email("weak"), "password": password, "name": "Weak"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert why in response.json()["detail"], response.json()


async def test_the_e_mail_address_is_no_password(client: httpx.AsyncClient) -> None:
    email = unique_email("self")
    for password in (email, email.partition("@")[0].upper()):
        response = await client.post(
            "/api/v1/accounts", json={"email": email, "password": password, "name": "Self"}
        )
        assert response.status_code == 422, response.text
        assert "e-mail" in response.json()["detail"]


async def test_long_passphrases_need_no_digits_or_capitals(client: httpx.AsyncClient) -> None:
    email = unique_email("phrase")
    passphrase = "the quick brown fox jumps over the lazy dog again and again, every morning"
    assert len(passphrase) > 64
    registered = await client.post(
        "/api/v1/accounts", json={"email": email, "password": passphrase, "name": "Fox"}
    )
    assert registered.status_code == 201, registered.text
    assert (await log_in(client, email, passphrase)).status_code == 200


async def test_the_storefront_says_why_a_password_is_refused(connect: Connect) -> None:
    browser = connect(remote_address())
    token = await _csrf(browser, "/register")
    response = await browser.post(
        "/register",
        data={
            "name": "Weak",
            "email": unique_email("weakform"),
            "password": "password123",
            "role": "buyer",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert "most common passwords" in response.text


# --- log-out and revocation -------------------------------------------------------------------


async def test_a_revoked_token_is_refused(client: httpx.AsyncClient) -> None:
    session = await sign_up(client)
    other = await _session(client, session)
    assert (await client.get("/api/v1/me", headers=session.headers)).status_code == 200

    revoked = await client.post("/api/v1/tokens/revoke", headers=session.headers)
    assert revoked.status_code == 204, revoked.text
    refused = await client.get("/api/v1/me", headers=session.headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    # Only that token: the account's other session goes on.
    assert (await client.get("/api/v1/me", headers=other.headers)).status_code == 200
    # Logging out needs the token itself.
    assert (await client.post("/api/v1/tokens/revoke")).status_code == 401


async def test_a_token_revoked_at_one_gateway_stops_working_at_another_within_seconds(
    marketplace: Marketplace, client: httpx.AsyncClient, connect: Connect
) -> None:
    replica = create_app(
        marketplace.backends,
        marketplace.runtime.settings,
        Authenticator(marketplace.backends.identity),
    )
    elsewhere = connect("127.0.0.1", replica)
    session = await sign_up(client)
    # The other replica has verified and cached the token.
    assert (await elsewhere.get("/api/v1/me", headers=session.headers)).status_code == 200

    assert (await client.post("/api/v1/tokens/revoke", headers=session.headers)).status_code == 204
    revoked_at = time.monotonic()
    while (await elsewhere.get("/api/v1/me", headers=session.headers)).status_code == 200:
        assert time.monotonic() - revoked_at < REVOCATIONS_SYNC_SECONDS + 1.0
        await asyncio.sleep(0.1)
    assert (await elsewhere.get("/api/v1/me", headers=session.headers)).status_code == 401


async def test_logging_out_of_the_storefront_revokes_its_token(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    browser = connect(remote_address())
    signed_in = await browser.post(
        "/login",
        data={
            "email": owner.account["email"],
            "password": owner.password,
            "csrf_token": await _csrf(browser, "/login"),
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["cache-control"] == "no-store"
    token = browser.cookies["colony_session"]

    logout = await browser.post("/logout", data={"csrf_token": await _csrf(browser, "/")})
    assert logout.status_code == 303
    stolen = await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
    assert stolen.status_code == 401


# --- tokens are never cached ------------------------------------------------------------------


async def test_answers_carrying_tokens_must_not_be_stored(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    owner = await sign_up(client)
    somewhere = connect(remote_address())
    for password in (owner.password, "not the password"):
        answer = await log_in(somewhere, owner.account["email"], password)
        assert answer.headers["cache-control"] == "no-store", answer.status_code
        assert answer.headers["pragma"] == "no-cache"


# --- helpers ----------------------------------------------------------------------------------


async def _session(client: httpx.AsyncClient, owner: Session) -> Session:
    """Another log-in of the same account: a second token."""
    response = await log_in(client, owner.account["email"], owner.password)
    assert response.status_code == 200, response.text
    return Session(owner.account, response.json()["access_token"], owner.password)


async def _csrf(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF_INPUT.search(page.text)
    assert found, "no csrf_token field on " + path
    return found.group(1)


def _without_trace(problem: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in problem.items() if k != "correlation_id"}
