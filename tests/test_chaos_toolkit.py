"""The Chaos Toolkit experiments shipped in deploy/chaos are valid experiments, and every
activity they name exists with the arguments they pass (as ``chaos validate`` checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaoslib.exceptions import InvalidActivity
from chaoslib.experiment import ensure_experiment_is_valid

EXPERIMENTS = sorted((Path(__file__).parents[1] / "deploy" / "chaos").glob("*.json"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_the_experiment_is_valid(path: Path) -> None:
    experiment = json.loads(path.read_text())
    ensure_experiment_is_valid(experiment)


def test_an_activity_with_a_wrong_argument_is_caught() -> None:
    experiment = json.loads(EXPERIMENTS[0].read_text())
    experiment["method"][1]["provider"]["arguments"]["nonsense"] = 1
    with pytest.raises(InvalidActivity):
        ensure_experiment_is_valid(experiment)


def test_there_is_an_experiment() -> None:
    assert EXPERIMENTS
