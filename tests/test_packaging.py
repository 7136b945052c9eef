"""Packaging: `make setup`'s editable install builds without warnings, and a wheel ships the
behaviour policies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# setuptools' PEP 517 hooks, run as pip runs them: every warning they emit reaches the user
# (pip shows each as a BuildBackendWarning)
_BUILD = """
import sys, warnings
from setuptools import build_meta
dist = sys.argv[1]  # build_meta rewrites sys.argv
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = [build_meta.build_editable(dist), build_meta.build_wheel(dist)]
for w in caught:
    print("WARNING", w.category.__name__, " ".join(str(w.message).split()))
print("BUILT", *names)
"""


def test_editable_build_is_quiet_and_the_wheel_ships_the_policies(tmp_path):
    project, out = tmp_path / "project", tmp_path / "dist"
    project.mkdir()
    out.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "bearl", project / "bearl", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("WARNING")] == []
    editable, wheel = lines[-1].split()[1:]
    with zipfile.ZipFile(out / editable) as z:  # a plain .pth: bearl is read from the tree
        pth = [n for n in z.namelist() if n.endswith(".pth")]
        assert [z.read(n).decode().strip() for n in pth] == [str(project.resolve())]
    with zipfile.ZipFile(out / wheel) as z:
        names = set(z.namelist())
    shipped = {
        f"bearl/data/policies/{p.name}" for p in (ROOT / "bearl" / "data" / "policies").iterdir()
    }
    assert {"bearl/data/policies/policies.json", "bearl/data/policies/hopper-medium.pt"} <= shipped
    assert shipped <= names
    tops = {n.split("/")[0] for n in names} - {"bearl"}
    assert len(tops) == 1 and tops.pop().endswith(".dist-info")  # no tests, bench, ...
