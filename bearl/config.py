"""Typed configs, presets, and the command-line flags derived from them.

Every field of :class:`TrainConfig` and of each algorithm's config dataclass becomes a flag,
spelled both ``--field_name`` (the original BEAR code's style) and ``--field-name``. The
docstring written under a field is its help text. Precedence, lowest first:
dataclass defaults < preset < ``--config FILE.yaml`` < command-line flags. :func:`resolve_run`
is the one place where the settings a user gives (flags, YAML, a dict, configs built in Python,
and for a resumed run its params.json) become a run's configs; the original code's flag names
are mapped first (``bearl/original_flags.py``), and what is particular to an algorithm (BEAR's
warm start capped to a short run) is its own hook (``run_preset``, ``extension_note``,
``default_text``: bearl/algos/base.py).

Why argparse and not tyro (which also derives a CLI from dataclasses and their field
docstrings; checked with tyro 1.0.17 on 2026-12-01): tyro reads ``--field_name`` and
``--field-name`` alike and suggests close flags, but (1) its booleans are ``--flag`` /
``--no-flag``, or with ``FlagConversionOff`` only ``True`` / ``False``: ``--eval_deterministic
true`` (the spelling of bearl's docs and of the original BEAR code's flags) is refused; (2) its
errors and help are multi-line boxed panels, where bearl prints one line; (3) ``bearl train``
reads the flags of every algorithm (the original CLI passed every flag to every algorithm)
while its ``--help`` lists those of the ``--algo`` given on the same line, so the flags
cannot wait for ``--algo`` to be known, nor the help be fixed before it is; (4) the preset to
apply depends on ``--algo``, ``--env`` and ``--dataset`` given on the same line, so the
defaults cannot be fixed before parsing. What this module writes by hand is the flag table
(``_add_flag``) and the field docstrings (``field_docs``, 25 lines of ``ast``); tyro's
docstring reader is private.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import json
import sys
import types
import typing
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from bearl.envs import env_family
from bearl.errors import ConfigError, one_line
from bearl.original_flags import normalize_names, original_flag_notes, original_names


@dataclass
class TrainConfig:
    """What to train on and how the run is driven (algorithm-independent)."""

    algo: str = "BEAR"
    """Algorithm: a name in the registry, bearl/algos/__init__.py (case-insensitive)."""
    dataset: str = "hopper-medium"
    """Dataset: a file (D4RL HDF5, original pickle, npy/npz), a Minari id (``minari:ID``) or
    folder, a D4RL name from the local cache (``hopper-medium-v2``) or a bearl suite name."""
    env: str | None = None
    """Evaluation environment; inferred from the dataset's metadata when not given."""
    preset: str = "paper"
    """Hyperparameter preset: ``paper`` (the algorithm's paper; for BEAR rlkit's settings of the
    D4RL paper) or ``original`` (its authors' code; for BEAR the NeurIPS 2019 code). A run's
    first line says what each is for the algorithm chosen."""
    steps: int = 15_000
    """Gradient steps in total. The default is sized for the quick start: BEAR's run took about
    12 minutes of training and evaluation on one core of a 2-vCPU server (``--threads 1``,
    fp32; docs/performance.md); the BEAR papers trained for 1M (original) to 3M (rlkit)
    steps."""
    eval_every: int = 2_500
    """Evaluate, log a progress row and checkpoint every this many gradient steps."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    snapshot_every: int | None = None
    """Keep a snapshot of the policy (its networks, not the optimizers) every this many steps
    under ``snapshots/step_NNNNNNN.pt`` in the run folder, for choosing a step offline
    (``bearl ope``, ``load_policy(run, checkpoint="step_N")``); default: at every evaluation
    step (every ``--eval_every``, with or without episodes); 0: none."""
    fqe_every: int = 0
    """Log an estimate of the current policy's value from data alone every this many steps (a
    multiple of ``--eval_every``): ``FQEReturnStart`` (discounted return at the dataset's
    episode starts), ``FQEScore`` (normalized) and ``FQEDiverged`` (1: the estimate left the
    values the data's rewards allow) in progress.csv, a learning curve without a simulator
    (with ``--eval_episodes 0``). One FQE critic follows the policy through the run
    (docs/ope.md); 0: none."""
    fqe_updates: int = 2_000
    """FQE gradient steps at each ``--fqe_every`` (about one per training step by default)."""
    eval_deterministic: bool = False
    """Also run each evaluation with the algorithm's deterministic action (BEAR, BCQ: the
    actor's mean instead of the best of sampled actions by Q) on the same episodes, logged as
    ``DeterministicAverageReturn`` / ``DeterministicNormalizedScore``; the score reported and
    used for best.pt stays the algorithm's own rule."""
    seed: int = 0
    """Seed of torch, numpy, minibatch sampling and evaluation episodes."""
    device: str = "cpu"
    """Torch device: ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: str = "fp32"
    """Matmul precision of the networks' hidden layers: ``fp32``, or ``bf16`` (bfloat16,
    forward and backward; weights, optimizer state, output layers, targets and losses stay
    float32). bf16 is fast only on CPUs with native bf16 (``avx512_bf16`` / ``amx_bf16``) and
    on GPUs; docs/performance.md has its parity table."""
    threads: int = 1
    """Torch CPU threads. 1 by default: on 2 threads an update waits for both cores, and
    another busy process makes it many times slower (docs/performance.md); 0: torch's default,
    one per core, faster on a machine left to this run alone."""
    flush_denormals: bool = True
    """Run the gradient updates on the CPU with denormal numbers (below 1.2e-38) flushed to
    zero. Adam's moments of weights whose gradient stays zero decay into that range, where x86
    arithmetic is tens of times slower: a long run's updates ran at about half a fresh run's
    speed (docs/performance.md, "Denormals"). An Adam step computed from such a value is below
    1e-30; ``false`` computes on them. Evaluation and dataset rollouts never flush."""
    log_dir: str = "runs"
    """Parent folder of run folders."""
    run_name: str | None = None
    """Run folder name (default: ``<algo>_<dataset>_seed<seed>_<time>``)."""
    tensorboard: bool = False
    """Also log to TensorBoard (needs the ``tensorboard`` extra)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the ``wandb`` extra)."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> None:
        """Raise ConfigError naming the first field whose value cannot work."""
        for name, low in (("steps", 1), ("eval_every", 1), ("eval_episodes", 0), ("threads", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name} must be at least {low}, got {getattr(self, name)}")
        if self.snapshot_every is not None and self.snapshot_every < 0:
            raise ConfigError(
                f"--snapshot_every must be 0 (none) or a number of steps, got {self.snapshot_every}"
            )
        if self.fqe_every < 0 or self.fqe_updates < 1:
            raise ConfigError(
                f"--fqe_every must be 0 (none) or a number of steps and --fqe_updates at least "
                f"1, got {self.fqe_every} and {self.fqe_updates}"
            )
        if self.fqe_every % self.eval_every:
            raise ConfigError(
                f"--fqe_every ({self.fqe_every}) must be a multiple of --eval_every "
                f"({self.eval_every}): the estimate goes into the progress rows"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision: expected fp32 or bf16, got '{self.precision}'")
        if not (self.device == "cpu" or self.device.startswith(("cuda", "mps"))):
            raise ConfigError(f"--device: expected cpu, cuda or cuda:N, got '{self.device}'")


# Settings a resumed run may change (``--steps`` extends it; the others are about the machine
# and the logs, not about what the run computes). Every other setting is the run's own.
RESUME_SETTINGS = (
    "steps",
    "progress",
    "threads",
    "device",
    "flush_denormals",
    "tensorboard",
    "wandb",
)

# The presets' names; each algorithm's file holds their values (``presets``) and what they are
# in words (``preset_docs``).
PRESETS: tuple[str, ...] = ("paper", "original")


def preset_overrides(algo: str, preset: str, env: str | None) -> dict[str, Any]:
    """Config values of a preset for an algorithm and env family (the algorithm's own data:
    ``presets`` and ``env_presets`` in its file)."""
    from bearl.algos import algorithm_class

    _check_preset(preset)
    return algorithm_class(algo).preset(preset, env_family(env) if env else None)


def preset_line(algo: str, preset: str, env: str | None) -> str:
    """The preset a run uses, and how to get the other one, in one line."""
    from bearl.algos import algorithm_class

    cls = algorithm_class(algo)
    name, words = cls.name, cls.preset_docs
    other = next(p for p in PRESETS if p != preset)
    if preset_overrides(name, preset, env) == preset_overrides(name, other, env):
        return f"{name}, {preset} preset (for {name} the same as --preset {other})"
    return f"{name}, {preset} preset: {words[preset]}; --preset {other} for {words[other]}"


# -- field docs and parsing ---------------------------------------------------------------------
@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal written under each field of a dataclass (its help text), including
    fields inherited from dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def parse_value(tp: Any, text: Any, name: str = "value") -> Any:
    """Convert ``text`` (a string from the CLI, or a YAML value) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text is None or (isinstance(text, str) and text.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(inner[0], text, name)
    if tp is bool:
        if isinstance(text, bool):
            return text
        low = str(text).strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--{name}: expected true/false, got '{text}'")
    if origin is tuple:
        items = text if isinstance(text, list | tuple) else str(text).replace(",", " ").split()
        elem = args[0] if args else str
        return tuple(parse_value(elem, x, name) for x in items)
    try:
        if tp is int:
            f = float(text)
            if f != int(f):
                raise ValueError
            return int(f)  # accepts 1e6 like the original's argparse floats
        if tp is float:
            return float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}: expected {tp.__name__}, got '{text}'") from None
    return str(text)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """Add ``--field_name`` / ``--field-name`` for every field of ``cls`` (default suppressed,
    so only flags the user gave appear in the namespace)."""
    group = parser.add_argument_group(title)
    hints = _hints(cls)
    for f in fields(cls):
        _add_flag(group, f.name, hints[f.name], f"{_help(cls, f.name)} (default: {_default(f)})")


def _help(cls: type, name: str) -> str:
    """A field's help text: its docstring; ``--algo``'s also names the algorithms registered."""
    text = field_docs(cls).get(name, "")
    if cls is TrainConfig and name == "algo":
        from bearl.algos import ALGORITHMS

        text += f" Registered: {', '.join(ALGORITHMS)}."
    return text


def add_algorithm_flags(parser: argparse.ArgumentParser, algo: str | None = None) -> None:
    """One flag per setting of any registered algorithm. A setting several algorithms share
    (``batch_size``, ``gamma``, ...) appears once, with each algorithm's default.

    With ``algo``, the settings of that algorithm only, in one group titled ``<NAME> settings``,
    each with that algorithm's description and default (``bearl train --algo NAME --help``)."""
    from bearl.algos import ALGORITHMS, algorithm_class

    if algo is not None:
        algo_cls = algorithm_class(algo)
        cls = algo_cls.config_cls
        group = parser.add_argument_group(f"{algo_cls.name} settings")
        docs, hints = field_docs(cls), _hints(cls)
        for f in fields(cls):
            text = f"{docs.get(f.name, '')} (default: {_default_text(algo_cls, f)})"
            _add_flag(group, f.name, hints[f.name], text)
        return
    owners: dict[str, list[tuple[str, type, Any]]] = {}
    for name in ALGORITHMS:
        cls = algorithm_class(name).config_cls
        for f in fields(cls):
            owners.setdefault(f.name, []).append((name, cls, f))
    groups: dict[str, Any] = {}
    for field_name, users in owners.items():
        first_algo, cls, f = users[0]
        if first_algo not in groups:
            title = f"{first_algo} settings" + (" (also used by others)" if groups else "")
            groups[first_algo] = parser.add_argument_group(title)
        if len(users) == 1:
            default = _default_text(algorithm_class(first_algo), f)
            text = f"{field_docs(cls).get(field_name, '')} (default: {default})"
        else:  # one description per different meaning, each naming its algorithms
            meanings: dict[str, list[str]] = {}
            for algo, c, _ in users:
                meanings.setdefault(field_docs(c).get(field_name, ""), []).append(algo)
            docs = " ".join(
                f"[{', '.join(algos)}] {doc}" if len(meanings) > 1 else doc
                for doc, algos in meanings.items()
            )
            defaults = ", ".join(f"{a} {_default_text(algorithm_class(a), g)}" for a, _, g in users)
            text = f"{docs} (defaults: {defaults})"
        _add_flag(groups[first_algo], field_name, _hints(cls)[field_name], text)


def _default_text(algo_cls: Any, f: dataclasses.Field) -> str:
    """A setting's default as ``--help`` shows it: the dataclass default, or what the algorithm
    says a run uses instead (its ``default_text``: BEAR's warm start, capped to the run)."""
    text = algo_cls.default_text(f.name, TrainConfig.steps)
    return str(_default(f)) if text is None else text


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _add_flag(group: Any, name: str, tp: Any, text: str) -> None:
    flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    taken = {opt for a in group._group_actions for opt in a.option_strings}
    flags = [x for x in flags if x not in taken]
    extra: dict[str, Any] = {"nargs": "?", "const": "true"} if tp is bool else {}
    group.add_argument(
        *flags,
        dest=name,
        default=argparse.SUPPRESS,
        metavar=_metavar(tp),
        help=text.strip(),
        **extra,
    )


def _metavar(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    if tp is bool:
        return "BOOL"
    if typing.get_origin(tp) is tuple:
        return "X,X"
    return getattr(tp, "__name__", "X").upper()


def build(cls: type, values: dict[str, Any], strict: bool = True) -> Any:
    """Instantiate dataclass ``cls`` from ``values`` (strings or typed), converting types.

    Unknown keys raise ConfigError when ``strict``."""
    hints = _hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if strict and unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    kwargs = {k: parse_value(hints[k], v, k) for k, v in values.items() if k in names}
    return cls(**kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML mapping of config fields."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({one_line(e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value")
    return data


def setting_names() -> set[str]:
    """Every name a setting may have in a YAML file or a dict: the fields of TrainConfig and of
    every algorithm's config, and the original code's flag names."""
    from bearl.algos import ALGORITHMS, algorithm_class

    names = {f.name for f in fields(TrainConfig)}
    names |= {f.name for a in ALGORITHMS for f in fields(algorithm_class(a).config_cls)}
    return names | original_names()


def unknown_settings(names: Any, where: str | None = None, known: Any = None) -> ConfigError:
    """The error for setting names that do not exist, each with the closest one that does
    ("did you mean steps?"), prefixed by ``where`` (the file they came from)."""
    known = sorted(setting_names() if known is None else known)
    parts = []
    for name in sorted(names):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    prefix = f"{where}: " if where else ""
    return ConfigError(f"{prefix}unknown setting(s): {', '.join(parts)}")


def check_settings(values: dict[str, Any], where: str | None = None) -> None:
    """Raise :func:`unknown_settings` for the keys of ``values`` that are no setting."""
    unknown = set(values) - setting_names()
    if unknown:
        raise unknown_settings(unknown, where)


# -- the one resolver: user settings -> a run's configs -----------------------------------------
@dataclass
class RunConfig:
    """A run's settings, resolved once by ``resolve_run``: what the training loop runs."""

    train: TrainConfig
    algo: Any
    """The algorithm's config (an instance of its ``config_cls``)."""
    resume: Path | None = None
    """The run folder a resumed run continues (None: a new run)."""
    started_steps: int | None = None
    """A resumed run: the ``--steps`` it started with (its params.json keeps them)."""
    extension_note: str | None = None
    """A resumed run extended: what it keeps that a new run of its new length would set
    otherwise (the algorithm's ``extension_note``: BEAR's capped warm start)."""


def resolve_run(
    values: dict[str, Any] | None = None,
    *,
    cfg: TrainConfig | None = None,
    algo_cfg: Any = None,
    resume: str | Path | None = None,
) -> RunConfig:
    """The one place where settings given by a user become a run's configs.

    The settings come as ``values`` (by name, as strings or typed: flags, a YAML file, a dict,
    the original code's names too) or as configs built in Python (``cfg``, ``algo_cfg``: what
    ``bearl.train`` is given).

    A new run: the algorithm's preset for the env family and the run's length
    (``run_preset``), then the values given on top; ``cfg`` without ``algo_cfg`` is resolved as
    its values; both configs given are taken as they are.

    ``resume``: the run folder's own settings (params.json); only the settings of
    ``RESUME_SETTINGS`` are taken from what is given (``--steps`` extends the run); any other
    setting given that differs from the run's raises ConfigError naming them all in one line
    (a ``cfg``'s ``log_dir`` and ``run_name`` are not compared: the folder is ``resume``).
    """
    if resume is not None:
        return _resumed(Path(resume), dict(values or {}), cfg, algo_cfg)
    if algo_cfg is not None:
        return RunConfig(cfg or TrainConfig(), algo_cfg)
    if values is None:
        values = to_dict(cfg or TrainConfig())
    for note in original_flag_notes(values):
        print(f"bearl: {note}", file=sys.stderr)
    values = normalize_names(values)
    from bearl.algos import ALGORITHMS, algorithm_class

    train_names = {f.name for f in fields(TrainConfig)}
    if "env" in values and "dataset" not in values and _looks_like_dataset(str(values["env"])):
        values["dataset"] = values["env"]
    train = build(TrainConfig, {k: v for k, v in values.items() if k in train_names})
    train.validate()
    try:
        cls = algorithm_class(train.algo)
    except ConfigError as e:
        raise ConfigError(f"--algo: {e}") from None
    algo_cls_cfg = cls.config_cls
    algo_names = {f.name for f in fields(algo_cls_cfg)}
    user_algo = {k: v for k, v in values.items() if k not in train_names}
    unknown = set(user_algo) - algo_names
    anywhere = {f.name for a in ALGORITHMS for f in fields(algorithm_class(a).config_cls)}
    if unknown - anywhere:
        raise unknown_settings(unknown - anywhere)
    if unknown:  # the original CLI passed every flag to every algorithm: accept, say so
        print(
            f"bearl: ignoring settings {cls.name} does not have: {', '.join(sorted(unknown))}",
            file=sys.stderr,
        )
        user_algo = {k: v for k, v in user_algo.items() if k in algo_names}
    _check_preset(train.preset)
    preset = cls.run_preset(train.preset, _family(train), train.steps)
    merged = {**preset, **user_algo}
    try:
        algo = build(algo_cls_cfg, merged)
        if hasattr(algo, "validate"):
            algo.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return RunConfig(train, algo)


def resolve(values: dict[str, Any]) -> tuple[TrainConfig, Any]:
    """The TrainConfig and the algorithm config of a new run with settings ``values`` (by name,
    from YAML and flags, flags last), as ``resolve_run`` resolves them. The original
    ``--env_name`` may name a D4RL dataset (``hopper-medium-v2``): it is then the dataset
    too."""
    run = resolve_run(values)
    return run.train, run.algo


def saved_configs(run_dir: str | Path) -> tuple[TrainConfig, Any]:
    """The configs a run folder's params.json holds (the settings the run started with)."""
    from bearl.algos import algorithm_class

    path = Path(run_dir) / "params.json"
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a bearl run folder (no params.json)")
    variant = json.loads(path.read_text())
    cfg = build(TrainConfig, variant["train"])
    return cfg, build(algorithm_class(cfg.algo).config_cls, variant["algo"])


def _resumed(run_dir: Path, values: dict[str, Any], cfg: Any, algo_cfg: Any) -> RunConfig:
    """:func:`resolve_run` of a resumed run: the run's configs, with RESUME_SETTINGS from
    ``values`` or ``cfg``; ConfigError when any other setting given differs from the run's."""
    from bearl.algos import algorithm_class

    check_settings(values)
    for note in original_flag_notes(values):
        print(f"bearl: {note}", file=sys.stderr)
    values = normalize_names(values)
    saved, saved_algo = saved_configs(run_dir)
    changed: dict[str, tuple[Any, Any]] = {}
    if cfg is not None:  # every setting of a config built in Python is given
        values.update({k: v for k, v in vars(cfg).items() if k not in ("log_dir", "run_name")})
    if algo_cfg is not None:
        if type(algo_cfg) is type(saved_algo):
            values.update(vars(algo_cfg))
        else:
            changed["algo"] = (type(algo_cfg).__name__, type(saved_algo).__name__)
    hints = {**typing.get_type_hints(type(saved_algo)), **typing.get_type_hints(TrainConfig)}
    own = {"algo": saved_algo, **{f.name: saved_algo for f in fields(saved_algo)}}
    own.update({f.name: saved for f in fields(TrainConfig)})
    for name, value in values.items():
        if name in RESUME_SETTINGS:
            continue
        if name not in own:  # a setting of another algorithm (or none): not this run's
            changed[name] = (value, None)
            continue
        now = parse_value(hints[name], value, name)
        if name == "algo":
            now = algorithm_class(now).name
        before = getattr(own[name], name)
        if now != before:
            changed[name] = (value, before)  # as given
    if changed:
        raise _kept_on_resume(run_dir, changed)
    keep = {k: values[k] for k in RESUME_SETTINGS if k in values}
    train = build(TrainConfig, {**to_dict(saved), **keep})
    train.validate()
    note = algorithm_class(saved.algo).extension_note(
        saved_algo, saved.preset, _family(saved), saved.steps, train.steps
    )
    return RunConfig(train, saved_algo, run_dir, saved.steps, note)


def _kept_on_resume(run_dir: Path, changed: dict[str, tuple[Any, Any]]) -> ConfigError:
    """One line: the settings given that differ from the run's, and what a resume may change."""
    given = ", ".join(f"--{k} {_text(now)}" for k, (now, _) in changed.items())
    kept = ", ".join(
        f"{k} {_text(before)}" if before is not None else f"no {k}"
        for k, (_, before) in changed.items()
    )
    may = ", ".join(f"--{k}" for k in RESUME_SETTINGS)
    return ConfigError(
        f"{run_dir / 'params.json'}: {given}: a resumed run keeps its own settings ({kept}); "
        f"a resume may change only {may} (start a new run for other settings)"
    )


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}' (choose paper or original)")


def _family(train: TrainConfig) -> str | None:
    """The env family a run's presets are chosen for (from --env, else the dataset's name)."""
    env = train.env or train.dataset
    return env_family(env) if env else None


def _looks_like_dataset(name: str) -> bool:
    """``hopper-medium-v2`` or ``hopper-medium`` (a dataset), not ``Hopper-v5`` (an env)."""
    parts = name.lower().split("-")
    return env_family(name) is not None and len(parts) >= 2 and not parts[1].startswith("v")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def default_settings(algorithm: str) -> dict[str, Any]:
    """Every setting of a run of ``algorithm`` at its dataclass default (algorithm and training
    fields, as a run's params.json lists them); empty for an algorithm bearl does not know.

    A run saved by an older bearl lacks the settings added since; it ran as the default does."""
    from bearl.algos import algorithm_class

    try:
        algo_cls = algorithm_class(algorithm)
    except ConfigError:
        return {}
    return {**to_dict(algo_cls.config_cls()), **to_dict(TrainConfig())}
