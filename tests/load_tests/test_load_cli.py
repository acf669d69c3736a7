"""``colony load`` refuses nonsense with a message naming the option, and exit code 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from colony.cli.main import app
from colony.load import DEFAULT_MIX, InvalidLoadConfig, LoadConfig, Step, parse_mix
from colony.platform.web.server import free_port


def colony(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (["--rate", "-5"], "--rate", "must be a number above 0"),
        (["--rate", "0"], "--rate", "must be a number above 0"),
        (["--rate", "inf"], "--rate", "must be a number above 0"),
        (["--duration", "0"], "--duration", "must be a number above 0"),
        (["--steps", "20:30,-40:30"], "--steps", "rate -40"),
        (["--steps", "20"], "--steps", "not RATE:SECONDS"),
        (["--steps", "20:0"], "--steps", "step length 0"),
        (["--steps", "20:30", "--rate", "5"], "--steps", "either --steps or --rate"),
        (["--mix", "browse=30,teleport=5"], "--mix", "unknown kind teleport"),
        (["--mix", "browse"], "--mix", "not KIND=WEIGHT"),
        (["--mix", "browse=-1"], "--mix", "must be a number >= 0"),
        (["--mix", "browse=lots"], "--mix", "is not a number"),
        (["--mix", "browse=0,search=0"], "--mix", "at least one kind"),
        (["--mix", "browse=1,browse=2"], "--mix", "given twice"),
        (["--url", "ftp://127.0.0.1"], "--url", "must start with http"),
        (["--url", "127.0.0.1:8080"], "--url", "must start with http"),
        (["--url", "http://"], "--url", "has no host"),
        (["--url", "http://127.0.0.1:99999"], "--url", "is not a URL"),
        (["--url", "http://127.0.0.1:8080/?x=1"], "--url", "without ?query"),
        (["--timeout", "0"], "--timeout", "must be a number above 0"),
        (["--max-in-flight", "0"], "--max-in-flight", ">= 1"),
        (["--connections", "-3"], "--connections", ">= 1"),
        (["--buyers", "-1"], "--buyers", ">= 0"),
    ],
)
def test_nonsense_options_exit_2_with_a_clear_message(args, option, says, tmp_path):
    result = colony("load", *args, "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 2, result.output
    assert option in result.output and says in result.output, result.output
    assert not (tmp_path / "r.json").exists()


def test_a_folder_is_not_a_report_file(tmp_path):
    result = colony("load", "--out", str(tmp_path))
    assert result.exit_code == 2 and "is a folder" in result.output, result.output


def test_a_marketplace_that_does_not_answer_exits_1(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = colony("load", "--url", url, "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 1, result.output
    assert "cannot connect" in result.output


def test_the_same_checks_guard_the_python_api():
    assert LoadConfig().plan() == (Step(20.0, 10.0),)
    assert LoadConfig(steps=(Step(5, 1), Step(0, 1))).plan() == (Step(5, 1), Step(0, 1))
    assert parse_mix("browse=1, checkout=2") == {"browse": 1.0, "checkout": 2.0}
    assert LoadConfig().mix == DEFAULT_MIX
    for bad in (
        {"rate": -1.0},
        {"duration": 0.0},
        {"steps": (Step(0, 5),)},
        {"mix": {"browse": 1, "teleport": 1}},
        {"url": "http//nowhere"},
        {"max_in_flight": 0},
    ):
        with pytest.raises(InvalidLoadConfig) as refused:
            LoadConfig(**bad)  # type: ignore[arg-type]
        assert refused.value.field == next(iter(bad)), bad


def test_help_describes_the_command():
    result = colony("load", "--help")
    assert result.exit_code == 0
    for option in ("--rate", "--steps", "--mix", "--timeout", "--seed", "--out", "--buyers"):
        assert option in result.output
