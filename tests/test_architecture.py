"""The architecture contract: services meet only through their public ``api`` modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(source_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=source_root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(source_root)},
    )


def test_the_contract_holds():
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contract_catches_a_service_reaching_into_another(tmp_path):
    shutil.copytree(
        ROOT / "src" / "colony", tmp_path / "colony", ignore=shutil.ignore_patterns("__pycache__")
    )
    cart = tmp_path / "colony" / "services" / "cart" / "service.py"
    cart.write_text(
        "from colony.services.catalog.repository import ListingRepository\n" + cart.read_text()
    )
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "colony.services.cart.service -> colony.services.catalog.repository" in result.stdout
