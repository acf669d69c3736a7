"""``bench/locustfile.py`` sends the mix ``colony load`` sends."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from colony.load import DEFAULT_MIX

LOCUSTFILE = Path(__file__).parents[2] / "bench" / "locustfile.py"


def test_the_locustfile_has_the_same_weights_without_importing_locust():
    tree = ast.parse(LOCUSTFILE.read_text())
    assignments = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "MIX" for t in node.targets)
    ]
    assert len(assignments) == 1
    assert ast.literal_eval(assignments[0].value) == DEFAULT_MIX


def test_the_locust_user_runs_each_kind_at_its_weight():
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed")
    # In a process of its own: importing locust monkey-patches the standard library (gevent).
    script = (
        "import collections, json, runpy, sys;"
        "user = runpy.run_path(sys.argv[1])['Buyer'];"
        "print(json.dumps(collections.Counter(t.__name__ for t in user.tasks)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(LOCUSTFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == DEFAULT_MIX
