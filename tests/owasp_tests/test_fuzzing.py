"""The gateway's API fuzzed by Schemathesis against its own OpenAPI document, with every check
Schemathesis has (``--checks all``), as each kind of caller: anonymous, a buyer, a seller and
an admin. It passes only if the document says exactly what the gateway accepts and answers:
no valid request refused, no invalid one accepted, no status, header or body the document
does not declare, no 500.

The marketplace is served over HTTP on this machine (loopback is exempt from the edge's rate
limits); Schemathesis runs as its command, with a fixed seed and bounded examples. The rules
no JSON Schema can state, and the one check each of them bends, are in ``fuzzing_rules.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from colony.mail_sink.server import MailSink
from colony.marketplace import Marketplace, running_marketplace
from colony.platform.runtime import Topology
from colony.platform.web.server import free_port
from colony.services.identity.api import IdentityApi, Registration
from conftest import list_product, settings_for, sign_up, unique_email
from owasp_tests.fuzzing_rules import RULE_BOUND_OPERATIONS
from owasp_tests.schemathesis_run import run_schemathesis

MAX_EXAMPLES = 15
"""Per operation and phase: about a minute per role on two cores."""
RUN_TIMEOUT_SECONDS = 300
REVOKE = "/api/v1/tokens/revoke"
"""Fuzzed apart, with a token of its own: it logs out whatever token it is sent."""
PASSWORD = "correct horse battery"
DEFAULT_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""Schemathesis's own statuses for a valid request (5xx is judged by not_a_server_error)."""


def config_text() -> str:
    """Schemathesis's configuration: where its hooks are, how much to generate, and the
    exceptions that are the product's own choices, each with its reason."""
    lines = [
        'hooks = "owasp_tests.fuzzing_rules"',
        "workers = 1",
        "request-timeout = 10",
        "[generation]",
        "deterministic = true",
        'database = "none"',
        f"max-examples = {MAX_EXAMPLES}",
    ]
    # A request these operations refuse for a rule beyond the document is a 422;
    # fuzzing_rules.refused_only_by_its_rules holds every such 422 to its rule.
    statuses = ", ".join(f'"{status}"' for status in [*DEFAULT_ACCEPTED, "422"])
    for method, path in [("POST", None), *RULE_BOUND_OPERATIONS]:
        lines += [
            "[[operations]]",
            *([f'include-path = "{path}"'] if path else []),
            f'include-method = "{method}"',
            f"checks.positive_data_acceptance.expected-statuses = [{statuses}]",
        ]
    # DELETE /listings/{id} delists: the listing stays readable, marked delisted, for the
    # orders and carts that name it, and so do its stock and recommendations.
    lines += [
        "[[operations]]",
        'include-path-regex = "^/api/v1/listings/\\\\{listing_id\\\\}"',
        "checks.use_after_free.enabled = false",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Served:
    market: Marketplace
    tokens: dict[str, str]
    """Role -> a bearer token; "revoking" is for the log-out endpoint alone."""
    workdir: Path


@pytest.fixture(scope="module")
async def served(
    tmp_path_factory: pytest.TempPathFactory, payment_provider: str, mail_sink: MailSink
) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("fuzzed")
    settings = settings_for(data_dir, port=free_port())
    async with running_marketplace(settings, Topology.one_process()) as market:
        tokens: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=market.url) as client:
            for role in ("buyer", "seller", "revoking"):
                session = await sign_up(client, "buyer" if role == "revoking" else role)
                tokens[role] = session.token
                if role == "seller":
                    # Something to find: fuzzed ids are mostly unknown, but search and the
                    # stateful phase reach this listing.
                    await list_product(client, session, stock=5)
            # Admins are provisioned by operators, never registered.
            email = unique_email("admin")
            await market.runtime.client(IdentityApi, caller="seed").provision(
                Registration(email=email, password=PASSWORD, name="Admin"), "admin"
            )
            # Every log-in before any fuzzing: fuzzed log-ins fail by the hundred from this
            # address, and the throttle would then hold back the right password as well.
            login = await client.post("/api/v1/tokens", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            tokens["admin"] = login.json()["access_token"]
        workdir = data_dir / "schemathesis"
        workdir.mkdir()
        (workdir / "schemathesis.toml").write_text(config_text())
        yield Served(market, tokens, workdir)


async def fuzz(served: Served, token: str | None, *selection: str) -> tuple[int, str]:
    """Schemathesis run against the served document; its exit code and its report."""
    document = f"{served.market.url}/api/openapi.json"
    return await run_schemathesis(
        served.workdir, [document, *selection], token, RUN_TIMEOUT_SECONDS
    )


@pytest.mark.parametrize("role", ["anonymous", "buyer", "seller", "admin"])
async def test_the_api_does_what_its_document_says(served, role):
    token = None if role == "anonymous" else served.tokens[role]
    code, report = await fuzz(served, token, "--exclude-path", REVOKE)
    assert code == 0, report
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested[1]) >= 30, report  # the whole API, bar log-out


async def test_log_out_does_what_its_document_says(served):
    code, report = await fuzz(served, served.tokens["revoking"], "--include-path", REVOKE)
    assert code == 0, report
    assert "Tested: 1" in report, report
