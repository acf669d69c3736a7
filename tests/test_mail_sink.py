"""The mail sink: it accepts mail over SMTP, keeps it, and lists it over HTTP and in the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from typer.testing import CliRunner

from colony.cli import mail as mail_cli
from colony.mail_sink import running_mail_sink
from colony.mail_sink.server import MailSink
from colony.mail_sink.store import DATABASE_FILE
from colony.platform.web.server import free_port, wait_for_port


async def send(
    port: int, to: list[str], subject: str, text: str = "Hello.\nBye.", sender: str = "shop@x.test"
) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@x.test>"
    message.set_content(text)
    await aiosmtplib.send(
        message, hostname="127.0.0.1", port=port, local_hostname="test", timeout=5
    )


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[MailSink]:
    async with running_mail_sink(free_port(), free_port(), tmp_path) as running:
        yield running


@pytest.fixture
async def http(sink: MailSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sink.url, timeout=5) as client:
        yield client


async def test_it_keeps_what_it_receives_and_lists_it_newest_first(sink, http):
    await send(sink.smtp_port, ["ada@example.com"], "First")
    await send(sink.smtp_port, ["Grace@Example.com", "linus@example.com"], "Second", "Ça va?")

    listed = (await http.get("/messages")).json()["items"]
    assert [m["subject"] for m in listed] == ["Second", "First"]
    assert listed[0]["to"] == ["Grace@Example.com", "linus@example.com"]
    assert listed[0]["mail_from"] == "shop@x.test"
    assert listed[0]["message_id"] == "<Second@x.test>"

    to_grace = (await http.get("/messages", params={"to": "grace@example.COM"})).json()["items"]
    assert [m["subject"] for m in to_grace] == ["Second"]
    assert (await http.get("/messages", params={"to": "nobody@example.com"})).json() == {
        "items": []
    }
    assert len((await http.get("/messages", params={"limit": 1})).json()["items"]) == 1

    one = (await http.get(f"/messages/{listed[0]['id']}")).json()
    assert one["text"] == "Ça va?\n"
    assert ["Subject", "Second"] in one["headers"]
    assert "Subject: Second" in one["raw"]


async def test_it_answers_problems_for_what_it_cannot_do(http):
    missing = await http.get("/messages/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    for limit in ("0", "5000", "many"):
        assert (await http.get("/messages", params={"limit": limit})).status_code == 422


async def test_clearing_empties_the_mailbox(sink, http):
    await send(sink.smtp_port, ["ada@example.com"], "One")
    await send(sink.smtp_port, ["ada@example.com"], "Two")
    assert (await http.delete("/messages")).json() == {"deleted": 2}
    assert (await http.get("/messages")).json()["items"] == []
    assert (await http.get("/messages", params={"to": "ada@example.com"})).json()["items"] == []


async def test_messages_survive_a_restart(tmp_path):
    smtp_port, http_port = free_port(), free_port()
    async with running_mail_sink(smtp_port, http_port, tmp_path) as first:
        await send(first.smtp_port, ["ada@example.com"], "Kept")
    assert (tmp_path / DATABASE_FILE).exists()
    async with running_mail_sink(smtp_port, http_port, tmp_path) as second:
        assert [m.subject for m in await second.store.recent()] == ["Kept"]


async def test_a_taken_port_is_refused(sink):
    with pytest.raises(OSError, match="already in use"):
        async with running_mail_sink(sink.smtp_port, free_port()):
            pass
    with pytest.raises(OSError, match="already in use"):
        async with running_mail_sink(free_port(), int(sink.url.rsplit(":", 1)[1])):
            pass


# The CLI and the process


async def cli(*args: str) -> Any:
    # In a thread: the CLI blocks on urllib while this loop serves its requests.
    runner = CliRunner(env={"COLUMNS": "200"})
    return await asyncio.to_thread(runner.invoke, mail_cli.app, list(args))


async def test_the_cli_lists_shows_and_clears(sink):
    await send(sink.smtp_port, ["ada@example.com"], "Order confirmed", "Your lamp is coming.")
    await send(sink.smtp_port, ["bob@example.com"], "New order")

    listed = await cli("list", "--url", sink.url)
    assert listed.exit_code == 0, listed.output
    assert "Order confirmed" in listed.output and "New order" in listed.output
    only_ada = await cli("list", "--url", sink.url, "--to", "ada@example.com", "--json")
    assert only_ada.exit_code == 0, only_ada.output
    (item,) = json.loads(only_ada.stdout)
    assert item["subject"] == "Order confirmed"

    shown = await cli("show", item["id"], "--url", sink.url)
    assert shown.exit_code == 0, shown.output
    assert "Your lamp is coming." in shown.output and "Subject:" in shown.output
    raw = await cli("show", item["id"], "--url", sink.url, "--raw")
    assert "Message-ID: <Order-confirmed@x.test>" in raw.output
    unknown = await cli("show", "nope", "--url", sink.url)
    assert unknown.exit_code == 1 and "404" in unknown.output

    cleared = await cli("clear", "--url", sink.url)
    assert cleared.exit_code == 0 and "Deleted 2 messages." in cleared.output
    empty = await cli("list", "--url", sink.url)
    assert empty.exit_code == 0 and "No messages." in empty.output


async def test_the_cli_says_when_no_sink_answers():
    result = await cli("list", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1 and "No mail sink" in result.output


def test_every_mail_command_has_help():
    for command in ("serve", "list", "show", "clear"):
        result = CliRunner().invoke(mail_cli.app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


async def test_python_dash_m_runs_it_with_its_mailbox_on_disk(tmp_path):
    smtp_port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "colony.mail_sink"),
        *("--smtp-port", str(smtp_port), "--http-port", str(http_port)),
        *("--data-dir", str(tmp_path)),
        env={**os.environ, "COLONY_LOG_LEVEL": "warning"},
    )
    try:
        await wait_for_port("127.0.0.1", http_port)
        await wait_for_port("127.0.0.1", smtp_port)
        await send(smtp_port, ["ada@example.com"], "From afar")
        listed = await cli("list", "--url", f"http://127.0.0.1:{http_port}", "--json")
        assert [m["subject"] for m in json.loads(listed.stdout)] == ["From afar"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    assert (tmp_path / DATABASE_FILE).exists()
