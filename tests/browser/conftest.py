"""Fixtures of the browser suite: the marketplace started with ``colony up`` in one process, a
seller's shop with a webhook receiver that fails until told otherwise, and a headless Chromium
per test whose screenshots are kept under ``var/test-artifacts/browser/<test>/``.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (elsewhere, name
them with ``COLONY_TEST_CHROMIUM`` and ``COLONY_TEST_CHROMEDRIVER``). Without them the suite
skips, unless ``COLONY_REQUIRE_SERVICES=1`` makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from browser.browsing import Browser, start_chromium
from colony.platform.web.server import free_port
from e2e.deployment import Deployment, TopologyChoice

ARTEFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "browser"
COURIER_STEP_SECONDS = 2
"""A parcel moves a step every 2 s, so it is delivered 6 s after its label is made: the order
page, which looks again every 2 s while the order is processing, first shows it completed with
the parcel not yet delivered, and delivered at its next look (10 s on)."""
WEBHOOK_ATTEMPTS = 2
"""A failing webhook is dead-lettered after its first retry, 2.5 to 5 s after the sale."""
_FAILED = pytest.StashKey[bool]()


@dataclass(frozen=True)
class Chromium:
    browser: str
    driver: str


def require_chromium() -> Chromium:
    browser = shutil.which(os.environ.get("COLONY_TEST_CHROMIUM") or "chromium")
    driver = shutil.which(os.environ.get("COLONY_TEST_CHROMEDRIVER") or "chromedriver")
    if not (browser and driver):
        missing = " and ".join(
            name for name, found in (("chromium", browser), ("chromedriver", driver)) if not found
        )
        if os.environ.get("COLONY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{missing} is required (COLONY_REQUIRE_SERVICES=1) but not installed")
        pytest.skip(f"no {missing} (Debian: apt-get install chromium chromium-driver)")
    return Chromium(browser, driver)


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    return require_chromium()


# --- the seller's webhook receiver -------------------------------------------------------


@dataclass
class Receiver:
    """A seller's webhook endpoint: answers 500 while ``failing``, 204 after."""

    port: int = field(default_factory=free_port)
    failing: bool = True
    answered: list[tuple[int, str]] = field(default_factory=list)
    """(status answered, X-Colony-Event-Id) of each request, in order."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> list[str]:
        """The event ids of the webhooks it accepted."""
        return [event for status, event in self.answered if status < 300]


@pytest.fixture(scope="package")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            status = 500 if state.failing else 204
            state.answered.append((status, self.headers.get("x-colony-event-id", "")))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Hook)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- the marketplace ---------------------------------------------------------------------


@pytest.fixture(scope="package")
def deployment(
    chromium: Chromium, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """``colony up`` in one process, on its own ports and data directory, every trace kept,
    parcels moving every few seconds, and sellers' webhooks allowed to this machine (where
    the receiver is)."""
    running = Deployment(
        TopologyChoice("browser"),
        tmp_path_factory.mktemp("browser") / "data",
        {
            "COLONY_TRACE_SAMPLE_RATIO": "1",
            "COLONY_COURIER_STEP_SECONDS": str(COURIER_STEP_SECONDS),
            "COLONY_WEBHOOK_ATTEMPTS": str(WEBHOOK_ATTEMPTS),
            "COLONY_INTERNAL_HOSTS_ALLOWED": "127.0.0.1",
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Shop:
    """A seller's one listing, found by a word no seeded title has, with a webhook to the
    receiver; and the order the buyer's journey places, once it has."""

    listing_id: str
    title: str
    word: str
    price: str
    order_id: str | None = None


@pytest.fixture(scope="package")
def shop(deployment: Deployment, receiver: Receiver) -> Shop:
    with httpx.Client(base_url=deployment.url + "/api/v1", timeout=30) as api:
        seller = {
            "email": "bramble@shops.example",
            "password": "correct horse battery",
            "name": "Bramble & Wick",
            "role": "seller",
        }
        assert api.post("/accounts", json=seller).status_code == 201
        login = api.post("/tokens", json={k: seller[k] for k in ("email", "password")})
        token = login.json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        title = "Bramblewick walnut desk lamp"
        draft = {"title": title, "category": "home-kitchen", "price_minor": 2500}
        listing = api.post("/listings", json=draft, headers=headers)
        assert listing.status_code == 201, listing.text
        listing_id = listing.json()["id"]
        receipt = api.post(
            f"/listings/{listing_id}/stock/receipts", json={"quantity": 10}, headers=headers
        )
        assert receipt.status_code == 201, receipt.text
        hook = api.put("/seller/webhook", json={"url": receiver.url}, headers=headers)
        assert hook.status_code == 200, hook.text
    return Shop(listing_id, title, "Bramblewick", "25.00")


# --- a browser per test, and what it leaves behind ---------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, chromium: Chromium, deployment: Deployment
) -> Iterator[Browser]:
    """A fresh Chromium (no cookies), its screenshots in ``var/test-artifacts/browser/<test>/``
    (emptied first); after a failure, the page's source and the marketplace's log beside them."""
    artefacts = ARTEFACTS / request.node.name
    shutil.rmtree(artefacts, ignore_errors=True)
    artefacts.mkdir(parents=True)
    print(f"screenshots: {artefacts}")
    request.config.stash.setdefault(_SHOWN, []).append(artefacts)
    driver = start_chromium(chromium.browser, chromium.driver)
    session = Browser(driver, deployment.url, artefacts)
    try:
        yield session
    finally:
        if request.node.stash.get(_FAILED, False):
            session.keep_failure(Path(deployment.log.name))
            request.config.stash.setdefault(_KEPT, []).append(artefacts)
        driver.quit()


_SHOWN = pytest.StashKey[list[Path]]()
_KEPT = pytest.StashKey[list[Path]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where to look: every browser test's screenshots, and what a failed one left."""
    config = terminalreporter.config
    if not config.stash.get(_SHOWN, []):
        return
    terminalreporter.write_line(f"browser tests: a screenshot of every step under {ARTEFACTS}")
    for path in config.stash.get(_KEPT, []):
        terminalreporter.write_line(f"  failed, with its page source and colony.log: {path}")
