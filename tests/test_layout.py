"""The package's layout follows the data flow: every import points down the line
shared pieces -> data -> algorithms -> config -> training -> using a policy -> runs -> offline
evaluation (ope) -> cli.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bearl.algos
from bearl.algos.base import Algorithm

PACKAGE = Path(bearl.algos.__file__).resolve().parents[1]
LAYERS = [
    ("bearl.errors", "bearl.files", "bearl.envs", "bearl.rollouts", "bearl.nets"),
    ("bearl.kernels", "bearl.progress", "bearl.perf"),  # (the same layer: shared pieces)
    ("bearl.data",),
    ("bearl.algos",),
    ("bearl.config", "bearl.original_flags"),
    ("bearl.training",),
    ("bearl.policy",),
    ("bearl.runs",),
    ("bearl.ope",),
    ("bearl.cli",),
]
SHARED = 1  # layers 0 and 1 are one layer


def layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return max(i, SHARED) if i <= SHARED else i
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    """Every bearl module imported in ``path``, at module level or inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bearl"):
            names = [a.name for a in node.names]
            if node.module == "bearl" and names != ["__version__"]:
                out += [(node.lineno, f"bearl.{n}") for n in names]
            elif node.module != "bearl":
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("bearl")]
    return out


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_import_points_down_the_data_flow():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name == "bearl":  # the package's front door re-exports from every layer
            continue
        own = layer(name)
        assert own is not None, f"{name}: not in any layer of tests/test_layout.py"
        for line, target in imports(path):
            theirs = layer(target)
            if theirs is not None and theirs > own:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bearl.training.loop import train\n")
    assert [layer(t) for _, t in imports(bad)] == [layer("bearl.training")]
    assert layer("bearl.training") > layer("bearl.algos.bear")


def test_algorithms_are_registered_by_real_imports():
    """The registry imports each algorithm's file, which holds its config and presets."""
    from bearl.algos import ALGORITHMS

    for name, cls in ALGORITHMS.items():
        assert cls.name == name and cls.__module__.startswith("bearl.algos.")
        assert cls.config_cls.__module__ == cls.__module__
        assert set(cls.presets) <= {"paper", "original"}


def test_every_algorithm_is_named_in_the_cli_and_says_its_own_presets():
    """An algorithm added to the registry shows in ``--algo``'s help, and the start line of its
    runs describes its own presets, not BEAR's (they once said "the D4RL paper's settings" for
    IQL). A preset that differs from the other is described, and no two algorithms with
    presets of their own share a description."""
    from bearl.algos import ALGORITHMS
    from bearl.cli import build_parser
    from bearl.config import PRESETS, preset_line, preset_overrides

    (train,) = [
        a.choices["train"] for a in build_parser()._actions if hasattr(a, "choices") and a.choices
    ]
    algo_help = next(a.help for a in train._actions if "--algo" in a.option_strings)
    seen: dict[str, str] = {}
    for name, cls in ALGORITHMS.items():
        assert name in algo_help, f"--algo's help does not name {name}"
        if preset_overrides(name, "paper", None) == preset_overrides(name, "original", None):
            assert "the same as --preset" in preset_line(name, "paper", None)
            continue
        for preset in PRESETS:
            words = cls.preset_docs[preset]
            assert words != Algorithm.preset_docs[preset], f"{name} keeps the default {preset}"
            assert words in preset_line(name, preset, None)
            assert seen.setdefault(words, name) == name, f"{name} and {seen[words]}: {words}"


def test_the_layout_page_names_every_module():
    """docs/layout.md's package section is the map of the package: a module added or moved
    must show there."""
    page = (PACKAGE.parent / "docs" / "layout.md").read_text()
    package = page[page.index("## The package") : page.index("## The repository")]

    def unmentioned(text: str) -> list[str]:
        missing = []
        for path in sorted(PACKAGE.rglob("*.py")):
            named = re.search(rf"(?<![\w/]){re.escape(path.name)}", text)  # not bc.py in td3bc.py
            if path.name != "__init__.py" and not named:
                missing.append(str(path.relative_to(PACKAGE.parent)))
        folders = {p.parent.name + "/" for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
        return missing + [f for f in sorted(folders) if f not in text]

    missing = unmentioned(package)
    assert not missing, f"docs/layout.md's package section does not mention: {', '.join(missing)}"
    assert unmentioned(package.replace("kernels.py", "")) == ["bearl/kernels.py"]
    assert unmentioned(package.replace(" bc.py", " ")) == ["bearl/algos/bc.py"]
