"""The documentation site (mkdocs.yml and docs/): it builds with ``mkdocs build --strict``, the
API reference holds the docstrings, a broken link inside docs/ fails that build, the pages'
Python examples run, and the Training page's table of run settings matches TrainConfig.

The examples: every ```python block of docs/*.md runs. The blocks of one page run in order in
one namespace (a later block may use what an earlier one made), in a fresh Python process whose
working folder is an empty temporary folder, with Minari's, D4RL's and bearl's data folders
pointed into it. A block is not run when the last non-blank line before its opening fence is
the HTML comment ``<!-- no-run: REASON -->`` (invisible on GitHub and on the site); the reason
is required. An example that needs a trained run or a big dataset makes a tiny one itself
(docs/using_a_policy.md) or says no-run and why.
"""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (the docs extra: pip install -e '.[docs]'; make test does)",
)


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # no end-of-life banner from the theme
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def text_of(page: str) -> str:
    """An HTML page's text: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


@needs_mkdocs
def test_the_site_builds_strictly_with_the_api_reference(tmp_path):
    from bearl.algos.base import Algorithm
    from bearl.config import TrainConfig
    from bearl.data.dataset import Dataset
    from bearl.data.load import load_dataset
    from bearl.policy.load import Policy, load_policy
    from bearl.training.loop import train

    res = build(CONFIG, tmp_path / "site")
    assert res.returncode == 0, res.stdout + res.stderr
    api = text_of((tmp_path / "site" / "api" / "index.html").read_text())
    for obj in (train, load_dataset, load_policy, TrainConfig, Dataset, Policy, Algorithm):
        first = " ".join(inspect.getdoc(obj).replace("``", "").split())
        sentence = re.split(r"(?<=\.)\s", first)[0]  # up to the first full stop
        assert sentence in api, f"the API reference lacks {obj.__qualname__}: {sentence!r}"


@needs_mkdocs
def test_a_broken_link_inside_docs_fails_the_build(tmp_path):
    """A copy of the site (the rest of the checkout linked in, so that links out of docs/
    resolve as they do here) with one more page whose links are broken."""
    repo = tmp_path / "repo"
    shutil.copytree(DOCS, repo / "docs")
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("docs", "mkdocs.yml", "site"):
            (repo / entry.name).symlink_to(entry)
    config = CONFIG.read_text()
    assert "  - Home: index.md\n" in config
    (repo / "mkdocs.yml").write_text(
        config.replace("  - Home: index.md\n", "  - Home: index.md\n  - Broken: broken.md\n")
    )
    (repo / "docs" / "broken.md").write_text(
        "# Broken\n\n"
        "[a page that does not exist](missing.md),\n"
        "[a heading that does not exist](index.md#no-such-heading),\n"
        "[a study that does not exist](../studies/no_such_study/README.md).\n"
    )
    res = build(repo / "mkdocs.yml", tmp_path / "site")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for target in ("missing.md", "no-such-heading", "no_such_study"):
        assert target in out, f"no warning names {target}:\n{out}"
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert warnings and all("broken.md" in w for w in warnings), out


NO_RUN = re.compile(r"<!--\s*no-run:(.*?)-->")


def fenced_blocks(page: Path):
    """(line of the opening fence, info string, code, the line before the fence) of every
    fenced block of a page (code dedented by the fence's indentation)."""
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)(.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.groups()
        before = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        code = "\n".join(x[len(indent) :] for x in lines[i + 1 : end])
        yield i + 1, info.strip(), code, before
        i = end + 1


def examples(page: Path) -> list[tuple[int, str]]:
    """(first line, code) of each Python example of a page that is to run."""
    return [
        (line + 1, code)
        for line, info, code, before in fenced_blocks(page)
        if info == "python" and not NO_RUN.search(before)
    ]


PAGES = sorted(DOCS.glob("*.md"))


def test_every_python_example_runs_or_says_why():
    runs, skipped = 0, 0
    for page in PAGES:
        for line, info, _, before in fenced_blocks(page):
            where = f"{page.name}:{line}"
            if info.startswith("py") or "python" in info:
                assert info == "python", f"{where}: write ```python (and no-run above it)"
            m = NO_RUN.search(before)
            if m and info == "python":
                assert m.group(1).strip(), f"{where}: <!-- no-run: REASON --> needs a reason"
                skipped += 1
            elif info == "python":
                runs += 1
            else:
                assert not m, f"{where}: no-run above a block that is not ```python"
    assert runs >= 6, f"only {runs} examples run ({skipped} marked no-run)"


DRIVER = """
import json, sys, traceback
page, blocks = sys.argv[1], json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for line, code in blocks:
    try:  # padded so that a traceback names the page's own line numbers
        exec(compile("\\n" * (line - 1) + code, page, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"the example at {page}:{line} failed")
"""


@pytest.mark.parametrize(
    "page", [p for p in PAGES if examples(p)], ids=[p.name for p in PAGES if examples(p)]
)
def test_the_examples_of_a_page_run(page, tmp_path):
    env = {
        **os.environ,
        "MINARI_DATASETS_PATH": str(tmp_path / "minari"),
        "D4RL_DATASET_DIR": str(tmp_path / "d4rl"),
        "BEARL_CACHE": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
    }
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, f"docs/{page.name}"],
        input=json.dumps(examples(page)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_training_page_lists_every_run_setting_with_its_default():
    from bearl.config import TrainConfig

    rows = {}
    for line in (DOCS / "training.md").read_text().splitlines():
        m = re.match(r"\| `--(\w+)` \| (`?)([^|`]+)\2 \|", line)
        if m:
            rows[m.group(1)] = m.group(3).strip()
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(rows) == set(defaults)
    for name, default in defaults.items():
        assert rows[name] == ("none" if default is None else str(default)), name
