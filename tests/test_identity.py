"""Accounts and tokens: registration, log-in, and tokens verifiable with the published JWKS."""

from __future__ import annotations

import base64
import json

import jwt

from conftest import sign_up, unique_email


async def test_register_and_log_in(client):
    session = await sign_up(client, "seller")
    me = await client.get("/api/v1/me", headers=session.headers)
    assert me.status_code == 200
    assert me.json()["role"] == "seller"
    assert "password" not in json.dumps(me.json())


async def test_a_duplicate_email_creates_no_second_account(client):
    email = unique_email("dup")
    body = {"email": email, "password": "long enough!", "name": "Dup"}
    first = await client.post("/api/v1/accounts", json=body)
    assert first.status_code == 201
    upper = {**body, "email": email.upper(), "password": "another one!", "name": "Second"}
    again = await client.post("/api/v1/accounts", json=upper)
    # The same answer as for a new e-mail (registration does not tell who has an account)...
    assert again.status_code == 201
    # ...but the account is the first one still, with its own password.
    login = await client.post("/api/v1/tokens", json={"email": email, "password": "long enough!"})
    assert login.status_code == 200
    assert login.json()["account"]["id"] == first.json()["id"] != again.json()["id"]
    refused = await client.post("/api/v1/tokens", json={"email": email, "password": "another one!"})
    assert refused.status_code == 401


async def test_wrong_password_and_unknown_email_are_the_same_401(client):
    session = await sign_up(client, "buyer")
    email = session.account["email"]
    wrong = await client.post("/api/v1/tokens", json={"email": email, "password": "nope nope"})
    unknown = await client.post(
        "/api/v1/tokens", json={"email": "x" + email, "password": "nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_tokens_verify_against_the_published_jwks(client):
    session = await sign_up(client, "buyer")
    jwks = (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(session.token)
    assert header["alg"] == "EdDSA"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        session.token, jwt.PyJWK.from_dict(key).key, algorithms=["EdDSA"], audience="colony"
    )
    assert claims["sub"] == session.id and claims["role"] == "buyer"


async def test_a_tampered_token_is_refused(client):
    session = await sign_up(client, "buyer")
    head, payload, signature = session.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await client.get(
        "/api/v1/me", headers={"authorization": f"Bearer {head}.{forged}.{signature}"}
    )
    assert response.status_code == 401
