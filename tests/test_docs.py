"""The docs against the code: the settings tables must state each algorithm's defaults and
presets as the code has them, and every ``bearl ...`` command the docs show must parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bearl.algos import algorithm_class
from bearl.config import preset_overrides

DOCS = Path(__file__).resolve().parent.parent / "docs"
ENVS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5"}


def split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return parts + [cur.strip()]


def parse_value(text: str):
    """A table cell's value: numbers, bools, none, ``256-256`` layer sizes, ``[-5, 2]`` pairs."""
    text = text.strip().strip("`")
    if text == "none":
        return None
    if text in ("True", "False"):
        return text == "True"
    if re.fullmatch(r"\d+(-\d+)+", text):
        return tuple(float(x) for x in text.split("-"))
    if text.startswith("["):
        return tuple(float(x) for x in text.strip("[]").split(","))
    try:
        return float(text)
    except ValueError:
        return text


def normalise(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(float(x) for x in value)
    return float(value)


def settings_tables(path: Path, default_algo: str | None):
    """(algo, {column: preset names}, rows) of each table headed ``| setting | ...``; the algo
    of a table is that of the last ``## ... (`--algo NAME`...`` heading above it."""
    algo, tables, columns, rows = default_algo, [], None, []
    for line in path.read_text().splitlines() + [""]:
        m = re.match(r"## .*`--algo (\w+)", line)
        if m:
            algo = m.group(1)
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|")
            else None
        )
        if cells and cells[0] == "setting":
            columns = {}
            for i, head in enumerate(cells[1:-1], start=1):
                columns[i] = [p for p in ("paper", "original") if p in head]
            rows = []
        elif cells and columns is not None and not set(cells[0]) <= set("-"):
            rows.append(cells)
        elif not cells and columns is not None:
            tables.append((algo, columns, rows))
            columns = None
    return tables


def expected(algo: str, preset: str, env: str) -> dict:
    cls = algorithm_class(algo)
    return vars(cls.config_cls(**preset_overrides(algo, preset, env)))


def doc_tables():
    yield from settings_tables(DOCS / "bear.md", "BEAR")
    yield from settings_tables(DOCS / "algorithms.md", None)


def checks():
    """(doc row, setting, preset, env, documented value) for every cell of every table."""
    for algo, columns, rows in doc_tables():
        for row in rows:
            names = re.findall(r"`(\w+)`", row[0])
            for col, presets in columns.items():
                cell = row[col]
                values = [cell.removesuffix(" each")] * len(names)
                if not cell.endswith(" each"):
                    values = split_top(cell)
                    if len(values) == 1:
                        values *= len(names)
                per_env = re.findall(r"(\w+) \(([\w, ]+)\)", cell)
                for preset in presets:
                    if per_env and len(names) == 1:  # e.g. "laplacian (hopper), gaussian (...)"
                        for value, fams in per_env:
                            for fam in fams.split(", "):
                                yield algo, names[0], preset, ENVS[fam], parse_value(value)
                        continue
                    assert len(values) == len(names), f"{algo} row {row[0]}: {cell!r}"
                    for name, value in zip(names, values):
                        yield algo, name, preset, "Hopper-v5", parse_value(value)


def test_the_docs_tables_have_rows():
    """Every settings table found has rows, and each is of a registered algorithm: every
    ``(`--algo NAME`)`` section of docs/algorithms.md, and BEAR's page. The list of
    algorithms is the registry's: one added without a table here is not asked for one."""
    from bearl.algos import ALGORITHMS

    found = {algo for algo, _, rows in doc_tables() if rows}
    sections = set(re.findall(r"^## .*`--algo (\w+)", (DOCS / "algorithms.md").read_text(), re.M))
    assert found == sections | {"BEAR"}
    assert found <= set(ALGORITHMS), f"tables of no registered algorithm: {found - set(ALGORITHMS)}"


@pytest.mark.parametrize("algo, name, preset, env, documented", list(checks()))
def test_documented_setting_matches_the_code(algo, name, preset, env, documented):
    values = expected(algo, preset, env)
    assert name in values, f"docs name {algo}.{name}, which the config does not have"
    assert normalise(values[name]) == documented, f"{algo} {preset} on {env}: {name}"


def test_bear_table_lists_every_knob():
    documented = {name for algo, name, *_ in checks() if algo == "BEAR"}
    fields = set(expected("BEAR", "paper", "Hopper-v5"))
    assert fields - documented == set()


def documented_commands():
    """Every ``bearl ...`` command line in a code block of the README, the docs and the studies'
    write-ups (continuation lines joined, comments and ``...`` placeholders dropped; synopses
    with ``[...]`` skipped)."""
    studies = sorted((DOCS.parent / "studies").glob("*/README.md"))
    for path in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md")), *studies]:
        in_fence, pending = False, ""
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
                continue
            if not (in_fence or line.startswith("    ")) and not pending:
                continue
            text = pending + line.strip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            text = re.sub(r"\s+#.*$", "", text)
            if text.startswith("bearl ") and "[" not in text:
                yield path.relative_to(DOCS.parent).as_posix(), text


def test_the_docs_show_commands():
    assert len(list(documented_commands())) >= 20


@pytest.mark.parametrize("doc, command", list(documented_commands()))
def test_documented_command_parses(doc, command):
    from bearl.cli import build_parser

    argv = [a for a in shlex.split(command)[1:] if a != "..."]
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{doc}: `{command}` does not parse (exit {e.code})")


def parser_actions():
    """(command, action) for every option of every ``bearl`` subcommand."""
    import argparse

    from bearl.cli import build_parser

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    yield from walk(subparser, f"{name} {sub}")
            elif action.option_strings:
                yield name, action

    return list(walk(build_parser(), "bearl"))


def test_help_states_the_options_defaults():
    """A hand-written "(default: X)" in an option's help is the option's real default."""
    import argparse

    stated = 0
    for command, action in parser_actions():
        m = re.search(r"\(default: ([\w.]+)\)", action.help or "")
        if not m or action.default in (None, argparse.SUPPRESS):
            continue  # no literal default, or generated from a config field's default
        stated += 1
        where = f"{command} {action.option_strings[0]}"
        assert m.group(1) == str(action.default), f"{where}: help says {m.group(1)}"
    assert stated >= 4


def help_of(command: str, option: str) -> str:
    return next(a.help for c, a in parser_actions() if c == command and option in a.option_strings)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_defaults_quoted_in_prose_and_help_match_the_code():
    """Defaults that the README, docs and help texts quote in words (not in a settings table)."""
    from bearl.config import TrainConfig, resolve
    from bearl.data.suite import DEFAULT_SIZE
    from bearl.policy.load import FRESH_SEED_OFFSET

    readme = (DOCS.parent / "README.md").read_text()
    bear, perf = (DOCS / "bear.md").read_text(), (DOCS / "performance.md").read_text()
    train, bear_cfg = resolve({"algo": "BEAR"})
    steps, warm = TrainConfig().steps, bear_cfg.warm_start_steps
    quoted = [
        (readme, r"for the default ([\d,]+) gradient steps", steps),
        (readme, r"seeds run seed \+ (\d+) \+ i", FRESH_SEED_OFFSET),
        (bear, r"the default ([\d,]+)-step run", steps),
        (bear, r"the default [\d,]+-step run[^.]*warms up for ([\d,]+) steps", warm),
        (perf, r"BEAR paper preset for ([\d,]+) gradient steps", steps),
        (perf, r"BEAR paper preset for [\d,]+ gradient steps \(([\d,]+) warm start\)", warm),
        (help_of("bearl eval", "--seed"), r"run's seed \+ (\d+)", FRESH_SEED_OFFSET),
        (help_of("bearl record", "--seed"), r"run's seed \+ (\d+)", FRESH_SEED_OFFSET),
        (help_of("bearl data make", "--size"), r"default: (\d+)", DEFAULT_SIZE),
        (help_of("bearl train", "--warm_start_steps"), r"(\d+) at the default --steps", warm),
        (help_of("bearl train", "--warm_start_steps"), r"at the default --steps (\d+)", steps),
    ]
    for text, pattern, value in quoted:
        m = re.search(pattern, text)
        assert m, f"not found: {pattern}"
        assert number(m.group(1)) == value, f"{pattern}: {m.group(1)} != {value}"
