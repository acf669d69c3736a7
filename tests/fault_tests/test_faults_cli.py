"""``colony faults``: nonsense exits 2 with a message saying what is wrong; a fault that cannot
be injected, or no running topology, exits 1."""

from __future__ import annotations

import pytest
from fault_support import paper_topology
from typer.testing import CliRunner

from colony.cli.faults import app

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path):
    paper_topology(tmp_path, {"orders": 2, "payments": 1, "gateway": 1})
    return tmp_path


def faults(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_list_shows_every_family_with_examples():
    result = faults("list")
    assert result.exit_code == 0
    for example in ("kill:orders-1", "partition:orders|payments", "skew:payments:+30s"):
        assert example in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inject", "meteor:orders"], "no fault family 'meteor'"),
        (["inject", "kill:billing"], "no service or process named 'billing'"),
        (["inject", "latency:orders->payments:fast"], "a number and a unit"),
        (["inject", "kill:orders", "--duration", "-3s"], "cannot be negative"),
        (["inject", "kill:orders", "--duration", "-3"], "cannot be negative"),
        (["inject", "kill:orders", "--duration", "soon"], "a number and a unit"),
        (["inject", "kill:orders", "--duration", "inf"], "0 or more"),
        (["heal"], "SPEC, or --all"),
        (["heal", "kill:orders", "--all"], "SPEC, or --all"),
        (["heal", "database:gateway"], "no database"),
    ],
)
def test_nonsense_exits_2_with_a_reason(data_dir, args, message):
    result = faults(*args, "--data-dir", str(data_dir))
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_no_running_topology_exits_1(tmp_path):
    result = faults("inject", "kill:orders", "--data-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "no running topology" in result.output


def test_a_fault_that_cannot_be_injected_exits_1(data_dir):
    # On paper only: no process runs behind any pid, so there is nothing to kill.
    result = faults("inject", "kill:orders-1", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "orders-1 is not running" in result.output
