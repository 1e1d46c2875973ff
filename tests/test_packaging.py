"""The install: every package listed, built-ins inside the rtstream namespace, nothing a user's folder can shadow."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = {"rtstream": "rtstream", "stages": "rtstream.stages", "simulators": "rtstream.simulators"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = []
    for folder, package in NAMESPACE.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.append(".".join((package, *parts)))
    assert sorted(listed) == sorted(found)


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_a_stages_folder_in_the_working_directory_changes_nothing(tmp_path: Path) -> None:
    for name in ("stages", "simulators"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise RuntimeError('the user folder was imported')\n")
    listed = run("from rtstream import registry; print(' '.join(i.name for i in registry.stages()))", tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {"tone", "chunker", "pacer", "telephony_in", "telephony_out"} <= set(listed.stdout.split())
    assert "could not load" not in listed.stderr
    services = run("from rtstream import registry; print(' '.join(i.name for i in registry.services()))", tmp_path)
    assert services.returncode == 0 and "caller" in services.stdout.split()


def test_no_top_level_stages_or_simulators_package_is_installed(tmp_path: Path) -> None:
    for name in ("stages", "simulators"):
        result = run(f"import {name}", tmp_path)
        assert result.returncode == 1 and f"No module named '{name}'" in result.stderr
