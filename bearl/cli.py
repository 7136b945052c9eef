"""The ``bearl`` command line: train, eval, export, record, plot, report, sweep, bench, and data
(make, list, info, convert, train-behavior, export-policies, policies).

Errors in the input (a bad file, an unknown flag value) and of the machine (a full disk, a path
that is a file) are printed as one line and exit with status 2; ``--debug`` shows the Python
traceback as well.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from bearl.errors import BearlError, DatasetExists, RunInterrupted


class _Parser(argparse.ArgumentParser):
    """argparse's parser, refusing abbreviated flags: ``--mmd_sigm 5`` is an unknown flag, not
    ``--mmd_sigma 5`` (``allow_abbrev`` is False unless given). The subcommands' parsers are of
    this class too: ``add_subparsers`` makes its parsers of the class of the parser it is
    called on. ``help_for(parser, argv)``, when given, writes ``--help`` from the whole
    command line the parser was given, so ``bearl train --help --algo IQL`` lists IQL's
    settings although ``--algo`` comes after ``--help``."""

    def __init__(self, *args: Any, help_for: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.help_for = help_for
        self.argv: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        return self.help_for(self, self.argv) if self.help_for else super().format_help()


TRAIN_USAGE = "%(prog)s [--algo NAME] [--dataset DATA] [--SETTING VALUE ...] [--config FILE.yaml] "
TRAIN_USAGE += "[--resume RUN_DIR]"


def _train_description(algo: str) -> str:
    """``bearl train --help``'s description: what it shows (the run settings and one
    algorithm's), how to see another algorithm's, and the other names settings may have."""
    from bearl.algos import ALGORITHMS
    from bearl.config import TrainConfig
    from bearl.original_flags import HELP_TEXT

    which = f"{algo}'s" + (" (the default --algo)" if algo == TrainConfig.algo else "")
    return (
        "Train an algorithm on a fixed dataset, evaluating every --eval_every steps. This "
        f"lists the settings every run has and {which}; another algorithm's: bearl train "
        f"--algo NAME --help (NAME: {', '.join(ALGORITHMS)}). {HELP_TEXT}"
    )


def _train_options(p: argparse.ArgumentParser) -> None:
    """The options of ``bearl train`` that are no algorithm's setting: --config, --resume and
    the run settings (TrainConfig)."""
    from bearl.config import RESUME_SETTINGS, TrainConfig, add_dataclass_flags

    may = ", ".join(f"--{name}" for name in RESUME_SETTINGS)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of any settings below")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help=f"continue the run in RUN_DIR with its own settings; only {may} may change "
        "(--steps to extend it), any other setting given must equal the run's. Extending keeps "
        "everything the run has done and its settings, its warm start included: a warm start "
        "capped at 1/5 of the steps the run started with stays so, so the extended run differs "
        "from a run started at the new length from the end of that warm start on (a line says "
        "so)",
    )
    add_dataclass_flags(p, TrainConfig, "run settings (every algorithm)")


def _given_algo(argv: list[str]) -> str | None:
    """The last ``--algo NAME`` (or ``--algo_name``, ``--algo=NAME``) of a command line."""
    name = None
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in ("--algo", "--algo_name"):
            name = value if eq else (argv[i + 1] if i + 1 < len(argv) else name)
    return name


def _train_help(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """``bearl train --help``: --config, --resume, the run settings and the settings of the
    --algo on the command line (default BEAR), each algorithm's group built from the registry;
    the parser itself reads every algorithm's flags."""
    from bearl.algos import algorithm_class
    from bearl.config import TrainConfig, add_algorithm_flags

    try:
        algo = algorithm_class(_given_algo(argv) or TrainConfig.algo).name
    except BearlError as e:
        parser.exit(2, f"{parser.prog}: error: --algo: {e}\n")
    shown = argparse.ArgumentParser(
        prog=parser.prog,
        usage=parser.usage,
        description=_train_description(algo),
        formatter_class=parser.formatter_class,
    )
    _train_options(shown)
    add_algorithm_flags(shown, algo)
    return shown.format_help()


def _train_parser(sub) -> None:
    from bearl.config import TrainConfig, add_algorithm_flags
    from bearl.original_flags import add_original_flags

    p = sub.add_parser(
        "train",
        help="train an algorithm on a dataset (default: BEAR on hopper-medium)",
        usage=TRAIN_USAGE,
        description=_train_description(TrainConfig.algo),
        help_for=_train_help,
    )
    _train_options(p)
    add_original_flags(p)  # the original BEAR code's names, mapped by config.resolve_run
    add_algorithm_flags(p)  # every algorithm's settings are read; --help shows one's
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from bearl.config import check_settings, load_yaml, resolve_run
    from bearl.training.loop import train_run

    skip = {"func", "command", "config", "resume", "debug", "data_command"}
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    values = load_yaml(args.config) if args.config else {}
    check_settings(values, args.config)  # a typo in the file names the file
    values.update(flags)
    # resolved once; a resumed run keeps its own settings but for config.RESUME_SETTINGS
    settings = resolve_run(values, resume=args.resume)
    result = train_run(settings)
    cfg = settings.train
    run = Path(args.resume) if args.resume else Path(cfg.log_dir) / result["run_dir"]
    print(_train_summary(run.absolute(), result))
    return 0


def _train_summary(run: Path, result: dict[str, Any]) -> str:
    """The end of ``bearl train``: the score beside the data's own level, and the files."""
    from bearl.files import dataset_label

    final, best = result.get("final_score"), result.get("best_score")
    scored = final is not None
    what = "normalized score" if scored else "average return"
    final = final if scored else result.get("final_return")
    head = f"{result['algo']} on {dataset_label(result['dataset'])}, {result['steps']:,} steps: "
    if final is None:
        head += "no evaluation (--eval_episodes 0)"
    else:
        head += f"{what} {final:.1f} at the end, best {best:.1f} at step {result['best_step']:,}"
        level = result.get("data_score") if scored else result.get("data_return")
        if level is not None:
            head += f"; the data's own level is {level:.1f} (the mean over its episodes)"
    lines = [head, *_study_context(result), f"run folder: {run}"]
    files = [
        ("progress.csv", "the evaluations and training metrics (viskit: variant.json)"),
        ("debug.log", "the run's log (a line per evaluation)"),
        ("params.json", "the settings the run started with (a resume reads them)"),
        ("result.json", "the scores above"),
        ("progress.png", "the learning curve"),
        ("best.pt", f"the policy of the best evaluation: bearl eval {run}"),
        ("checkpoint.pt", f"the last step: continue with bearl train --resume {run} --steps N"),
    ]
    lines += [f"  {name:<14} {text}" for name, text in files if (run / name).exists()]
    return "\n".join(lines)


def _study_context(result: dict[str, Any]) -> list[str]:
    """Lines that put a suite dataset's score in context: the 200k-step study's BC at this
    budget and BC and BEAR at 200k steps (bearl/data/study_200k.json, made by
    studies/bear_200k/quickstart_context.py), and the command that runs longer."""
    from importlib import resources

    from bearl.files import dataset_label

    data = dataset_label(str(result.get("dataset")))
    table = json.loads(resources.files("bearl.data").joinpath("study_200k.json").read_text())
    row = table.get(data)
    if row is None or result.get("final_score") is None:
        return []
    bc, bear = row.get("BC", {}), row.get("BEAR", {})
    quick = f"BC at {row['quick_steps']:,} steps {bc['at_quick']:.1f}; " if "at_quick" in bc else ""
    steps = max(int(result.get("steps") or 0), 200_000)
    return [
        f"in context, bearl's 200k-step study on {data} (studies/bear_200k, {bear.get('seeds')} "
        f"seed(s)): {quick}at 200k steps BC {bc.get('last5_200k', float('nan')):.1f}, BEAR "
        f"{bear.get('last5_200k', float('nan')):.1f} (mean of the last five evaluations)",
        f"to train longer: bearl train --dataset {data} --steps {steps} (hours on one core)",
    ]


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="inspect, convert and make datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)

    info = dsub.add_parser("info", help="summary and validation of a dataset")
    info.add_argument("source", help="file, folder, minari:ID, D4RL name or suite name")
    info.add_argument("--env", help="check the dataset against this environment's spaces")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_data_info)

    conv = dsub.add_parser("convert", help="write a dataset as Minari or D4RL HDF5")
    conv.add_argument("source")
    conv.add_argument("--to", choices=["minari", "d4rl"], required=True)
    conv.add_argument("out", help="Minari dataset id (e.g. me/hopper/mine-v0) or .hdf5 path")
    conv.add_argument("--env", help="environment of the data when the source names none")
    conv.add_argument("--overwrite", action="store_true")
    conv.set_defaults(func=cmd_data_convert)

    mk = dsub.add_parser(
        "make",
        help="make a bearl suite dataset (<env>-<kind>) from shipped behaviour policies",
        description="Make <env>-<kind> (env: hopper, walker2d, halfcheetah; kind: random, "
        "medium, expert, medium-replay, medium-expert) as the Minari dataset "
        "bearl/<env>/<kind>-v0 under MINARI_DATASETS_PATH.",
    )
    mk.add_argument("name", nargs="+", help="suite dataset name(s), or 'all'")
    mk.add_argument(
        "--size",
        type=int,
        default=None,
        help="transitions (default: 1000000; medium-replay: the env steps of the "
        "behaviour run up to the medium snapshot, as D4RL)",
    )
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    mk.set_defaults(func=cmd_data_make)

    ls = dsub.add_parser("list", help="which suite datasets exist locally, with their stats")
    ls.set_defaults(func=cmd_data_list)

    tb = dsub.add_parser(
        "train-behavior",
        help="train a behaviour policy online with Stable-Baselines3 SAC (for making datasets)",
    )
    from bearl.config import add_dataclass_flags
    from bearl.data.behavior_policies import BehaviorConfig

    add_dataclass_flags(tb, BehaviorConfig, "behaviour training")
    tb.add_argument("--resume", action="store_true", help="continue the run in --out")
    tb.set_defaults(func=cmd_train_behavior)

    ex = dsub.add_parser(
        "export-policies",
        help="choose medium/expert snapshots of a behaviour run and write them as policy files",
    )
    ex.add_argument("run", help="behaviour run folder (from train-behavior)")
    ex.add_argument("--out", default=None, help="folder (default: the package's policies/)")
    ex.add_argument("--medium-step", type=int, default=None)
    ex.add_argument("--expert-step", type=int, default=None)
    ex.add_argument("--episodes", type=int, default=50, help="episodes to measure each policy")
    ex.add_argument(
        "--candidates",
        type=int,
        default=1,
        help="measure the N snapshots with the best 10-episode returns over --episodes "
        "episodes each and ship the best as the expert (default 1: the best 10-episode one)",
    )
    ex.add_argument(
        "--levels",
        default="medium,expert,medium-replay",
        help="which policy files to write, comma-separated (e.g. expert: a stronger expert "
        "from another run, this environment's medium and replay policies kept)",
    )
    ex.set_defaults(func=cmd_export_policies)

    pol = dsub.add_parser("policies", help="the shipped behaviour policies and their returns")
    pol.set_defaults(func=cmd_policies)


def cmd_data_info(args: argparse.Namespace) -> int:
    from bearl.data import load_dataset
    from bearl.data.load import describe

    ds = load_dataset(args.source, env=args.env)
    d = describe(ds)
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    width = max(len(k) for k in d)
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:.3f}"
        print(f"{k:<{width}}  {v}")
    print(f"{'validation':<{width}}  ok")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from bearl.data import load_dataset

    ds = load_dataset(args.source, env=args.env)
    if args.to == "d4rl":
        from bearl.data.d4rl import write_d4rl

        if Path(args.out).exists() and not args.overwrite:
            raise BearlError(f"{args.out}: exists (use --overwrite)")
        write_d4rl(ds, args.out)
    else:
        from bearl.data.minari_io import write_minari

        try:
            write_minari(ds, args.out, overwrite=args.overwrite)
        except DatasetExists as e:
            raise DatasetExists(e.source, e.folder, "pass --overwrite to replace it") from None
    print(f"wrote {len(ds)} transitions, {ds.num_episodes} episodes to {args.out}")
    return 0


def cmd_data_make(args: argparse.Namespace) -> int:
    from bearl.data import suite

    names = args.name
    if names == ["all"]:
        names = list(suite.SUITE_NAMES)
    for name in names:
        try:
            ds = suite.make(name, size=args.size, seed=args.seed, overwrite=args.overwrite)
        except DatasetExists as e:
            raise DatasetExists(e.source, e.folder, "pass --overwrite to make it again") from None
        ret = ds.episode_returns
        norm = ds.normalized(ret)
        print(
            f"{name}: {len(ds)} transitions, {ds.num_episodes} episodes, return "
            f"{ret.mean():.1f} ± {ret.std():.1f}"
            + (f" (normalized {norm.mean():.1f})" if norm is not None else "")
            + f" -> minari:{suite.dataset_id(name)}"
        )
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from bearl.data import suite
    from bearl.data.minari_io import minari_local_exists, minari_root

    print(f"suite datasets under {minari_root()}:")
    print(f"{'name':<28} {'transitions':>11} {'episodes':>8} {'return':>9} {'normalized':>10}")
    for e in suite.SUITE_ENVS:
        for k in suite.SUITE_KINDS:
            name = f"{e}-{k}"
            if not minari_local_exists(suite.dataset_id(name)):
                print(f"{name:<28} {'-':>11}   (make it: bearl data make {name})")
                continue
            ds = suite.read_local(name)
            ret = ds.episode_returns
            norm = ds.normalized(ret)
            stale = "  stale: made from other policies (remade on next use)"
            print(
                f"{name:<28} {len(ds):>11} {ds.num_episodes:>8} {ret.mean():>9.1f} "
                f"{(norm.mean() if norm is not None else float('nan')):>10.1f}"
                + (stale if suite.is_stale(ds) else "")
            )
    return 0


def cmd_train_behavior(args: argparse.Namespace) -> int:
    from bearl.config import build
    from bearl.data.behavior_policies import BehaviorConfig, train_behavior

    values = {k: v for k, v in vars(args).items() if k in {f.name for f in fields(BehaviorConfig)}}
    if args.resume:  # the run's own settings, updated with the flags given now (e.g. --steps)
        saved = Path(values.get("out", BehaviorConfig.out)) / "run.json"
        if saved.exists():
            values = {**json.loads(saved.read_text())["config"], **values}
    out = train_behavior(build(BehaviorConfig, values), resume=args.resume)
    print(f"behaviour run: {out} (snapshots in {out / 'snapshots'})")
    return 0


def cmd_export_policies(args: argparse.Namespace) -> int:
    from bearl.data.behavior_policies import export_policies

    out = Path(args.out) if args.out else Path(__file__).parent / "data" / "policies"
    levels = [v.strip() for v in args.levels.split(",") if v.strip()]
    entry = export_policies(
        args.run,
        out,
        args.medium_step,
        args.expert_step,
        args.episodes,
        levels=levels,
        candidates=args.candidates,
    )
    print(json.dumps(entry, indent=2))
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    index = Path(__file__).parent / "data" / "policies" / "policies.json"
    data = json.loads(index.read_text()) if index.exists() else {}
    if not data:
        print("no behaviour policies are shipped in this bearl version")
        return 0
    head = f"{'env':<12} {'level':<7} {'algo':<4} {'train step':>10} {'return':>16}"
    print(head + f" {'normalized':>10}  versions")
    for fam, levels in sorted(data.items()):
        for level in ("medium", "expert"):
            if level in levels:
                p = levels[level]
                ret = f"{p['return_mean']:.1f} ± {p['return_std']:.1f}"
                print(
                    f"{fam:<12} {level:<7} {p.get('algo', 'SAC'):<4} {p['train_step']:>10} "
                    f"{ret:>16} {p['normalized']:>10.1f}  mujoco {p['mujoco']}, {p['env_id']}"
                )
    return 0


def _plot_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="learning curves from run folders",
        description="Plot a progress.csv column against gradient steps: runs grouped by "
        "algorithm and dataset (and --by settings), the mean over seeds with a shaded band; "
        "or, with --profile, performance profiles of the runs' scores.",
    )
    p.add_argument("runs", nargs="+", help="run folders, or folders of runs (one level down)")
    p.add_argument("-o", "--out", default="curves.png", help="output file (.png, .svg or .pdf)")
    p.add_argument(
        "--metric",
        default="NormalizedScore",
        help="progress.csv column, e.g. NormalizedScore, AverageReturn, Overestimation, "
        "ActionMSE, NearestActionDistance (default: NormalizedScore)",
    )
    p.add_argument("--smooth", type=int, default=1, help="moving-average window (rows)")
    p.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="SETTING",
        help="also group runs by this setting (e.g. --by mmd_sigma); repeatable",
    )
    p.add_argument(
        "--band",
        choices=["std", "minmax", "none"],
        default="std",
        help="shaded band over seeds: mean ± 1 std (sample std, ddof=1), or min to max "
        "(default: std)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="performance profiles instead of curves: per algorithm, the fraction of its runs "
        "(all its datasets) with a score above tau, with a 95%% stratified bootstrap band",
    )
    p.add_argument(
        "--at",
        type=int,
        metavar="STEP",
        help="with --profile: each run's score up to this step (runs short of it left out)",
    )
    p.add_argument(
        "--last",
        type=int,
        metavar="K",
        help="with --profile: each run's score is the mean of its last K evaluations (up to --at)",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=2000,
        metavar="N",
        help="with --profile: bootstrap resamples of the band (default: 2000)",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the bootstrap (default: 0)"
    )
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from bearl.runs.plot import plot_profile, plot_runs

    runs = [Path(r) for r in args.runs]
    if args.profile:
        print(
            plot_profile(
                runs,
                Path(args.out),
                args.metric,
                args.at,
                args.last,
                args.by,
                args.resamples,
                args.seed,
            )
        )
        return 0
    if args.at is not None or args.last is not None:
        raise BearlError("--at and --last go with --profile (curves show every step)")
    print(plot_runs(runs, Path(args.out), args.metric, args.smooth, args.band, args.by))
    return 0


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="table of final and best scores per algorithm and dataset (mean ± sample std over "
        "seeds)",
        description="One row per algorithm and dataset (and --by settings): the final and best "
        "score, mean ± sample std (ddof=1) over seeds; with --at / --last, windows of the "
        "evaluations up to a step; with --aggregate, --compare or --improvement, tables across "
        "datasets with stratified bootstrap intervals instead.",
    )
    p.add_argument("runs", nargs="+", help="run folders, or folders of runs (one level down)")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    p.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="SETTING",
        help="also group runs by this setting (e.g. --by mmd_sigma); repeatable",
    )
    p.add_argument(
        "--metric",
        default="NormalizedScore",
        help="progress.csv column to tabulate: its final and largest value (default: the "
        "normalized score, final and best), e.g. Overestimation",
    )
    p.add_argument("-o", "--out", default=None, help="write the table to this file")
    w = p.add_argument_group("windows (every number then from progress.csv)")
    w.add_argument(
        "--at",
        type=int,
        action="append",
        metavar="STEP",
        help="the evaluation at STEP (or the last one before it) and the best up to it; runs "
        "that have not reached STEP are left out and named; repeatable: the columns of each "
        "step side by side (e.g. --at 50000 --at 200000), over the runs that reached the largest",
    )
    w.add_argument(
        "--last",
        type=int,
        metavar="K",
        help="add the mean of the last K evaluations (up to --at), e.g. --last 5; it is then "
        "each run's score for --ci, --aggregate, --compare and --improvement",
    )
    c = p.add_argument_group("columns")
    c.add_argument(
        "--data-level",
        action="store_true",
        help="add the data's own level (the mean normalized score of its episodes)",
    )
    c.add_argument(
        "--pool-precision",
        action="store_true",
        help="average bf16 and fp32 seeds in one row (a settings column says which made them); "
        "by default they get rows of their own",
    )
    c.add_argument(
        "--ci",
        action="store_true",
        help="add each row's 95%% bootstrap interval of the mean score over seeds",
    )
    c.add_argument(
        "--matrix",
        action="store_true",
        help="one row per dataset, one column per algorithm, each cell the mean score over "
        "seeds (the last-K mean with --last; with --ci its interval) and the seed count",
    )
    a = p.add_argument_group("across datasets (instead of the table of groups)")
    a.add_argument(
        "--aggregate",
        action="store_true",
        help="per algorithm over its datasets: mean, median and IQM of its runs, each with a "
        "95%% stratified bootstrap interval",
    )
    a.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="the probability of improvement P(A > B) on each dataset and averaged over them, "
        "with a 95%% stratified bootstrap interval; repeatable",
    )
    a.add_argument(
        "--improvement",
        action="store_true",
        help="P(row > column) for every pair of algorithms, averaged over shared datasets",
    )
    b = p.add_argument_group("bootstrap (--ci, --aggregate, --compare, --improvement)")
    b.add_argument(
        "--resamples", type=int, default=2000, metavar="N", help="resamples (default: 2000)"
    )
    b.add_argument("--seed", type=int, default=0, metavar="S", help="its seed (default: 0)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from bearl.runs.report import Window, report

    text = report(
        args.runs,
        args.format,
        args.by,
        args.metric,
        Window.of(args.at, args.last),
        pool_precision=args.pool_precision,
        ci=args.ci,
        data_level=args.data_level,
        aggregate=args.aggregate,
        compare=args.compare,
        improvement=args.improvement,
        matrix=args.matrix,
        resamples=args.resamples,
        seed=args.seed,
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def _sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run algorithms x datasets x grid x seeds from a YAML spec (on Ray), resumable",
        description="Expand SPEC.yaml (algos, datasets, seeds or num_seeds, grid, base, "
        "log_dir; see docs/sweeps.md) into trials, one run folder each, and run the "
        "unfinished ones on Ray with one CPU per trial. Running it again skips finished "
        "trials and resumes interrupted ones from their checkpoints.",
    )
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address, e.g. auto or ray://HEAD:10001 (default: start Ray locally)",
    )
    p.add_argument(
        "--max-concurrent",
        "--max_concurrent",
        dest="max_concurrent",
        type=int,
        default=None,
        metavar="N",
        help="trials running at once (default: the cluster's CPUs)",
    )
    p.add_argument(
        "--dry-run",
        "--dry_run",
        dest="dry_run",
        action="store_true",
        help="print the trials, their state and the core-hours left at measured paces; run nothing",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="run the trials without Ray, one after another, each in a fresh process; "
        "start the same command again in another terminal to use another core",
    )
    bf16 = p.add_mutually_exclusive_group()
    bf16.add_argument(
        "--converted-bf16",
        "--converted_bf16",
        dest="converted_bf16",
        action="store_true",
        help="also run the trials with precision bf16 on a CPU without native bf16 "
        "(no avx512_bf16 / amx_bf16 flag), where they run several times slower than fp32; "
        "by default they are deferred, and the sweep exits with status 3 once the rest is done",
    )
    bf16.add_argument(
        "--fp32-fallback",
        "--fp32_fallback",
        dest="fp32_fallback",
        action="store_true",
        help="on a CPU without native bf16, run the bf16 trials not started yet in fp32 "
        "instead (the reference precision), recorded as fp32 in their folders; every sweep "
        "of the spec then counts and resumes them in fp32; started bf16 trials stay deferred",
    )
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from bearl.runs.sweep import run_sweep

    summary = run_sweep(
        args.spec,
        args.address,
        args.max_concurrent,
        local=args.local,
        dry_run=args.dry_run,
        converted_bf16=args.converted_bf16,
        fp32_fallback=args.fp32_fallback,
    )
    counts = summary["counts"]
    if counts.get("failed") or counts.get("conflict"):
        return 1
    return 3 if counts.get("deferred") and not args.dry_run else 0


# -- using a trained policy: eval, export, record (bearl/policy/) --------
def _policy_parsers(sub) -> None:
    def common(p, what: str) -> None:
        p.add_argument("run", metavar="RUN_DIR", help="run folder (or a checkpoint file)")
        p.add_argument(
            "--checkpoint",
            default="best",
            metavar="best|final|step_N|PATH",
            help=f"best.pt (default), final (checkpoint.pt), step_N (the run's snapshot of step "
            f"N, --snapshot_every) or a checkpoint file to {what}",
        )

    ev = sub.add_parser(
        "eval",
        help="evaluate a trained policy: returns, normalized scores, 95%% CI",
        description="Run episodes of a trained policy and print raw and normalized returns with "
        "mean, sample std (ddof=1, the std the confidence interval uses), median and a "
        "Student-t confidence interval of the mean. --json's summaries keep the population "
        "std (ddof=0, as progress.csv) beside every episode's return.",
    )
    common(ev, "evaluate")
    ev.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    ev.add_argument(
        "--seed",
        type=int,
        default=None,
        help="episode i is reset with seed S+i; torch's sampling is seeded with S (default: the "
        "run's seed + 200000, not the episodes the best checkpoint was selected on)",
    )
    ev.add_argument("--env", help="evaluate in this environment (e.g. another version)")
    ev.add_argument(
        "--deterministic",
        action="store_true",
        help="the algorithm's deterministic action (e.g. BEAR's mean action) instead of its own "
        "action selection",
    )
    ev.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="hidden-layer matmuls while acting (default: the run's own --precision, as in its "
        "training evaluations)",
    )
    ev.add_argument("--confidence", type=float, default=0.95, help="CI level (default: 0.95)")
    ev.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser(
        "export",
        help="write a trained policy as a TorchScript or ONNX file (no bearl needed to run it)",
        description="Export a trained policy: observations [batch, obs_dim] float32 -> actions "
        "in the env's bounds. Default: the algorithm's own action selection, sampling inside "
        "the graph (BEAR: argmax of Q_1 over sampled actions); --deterministic: its "
        "deterministic action.",
    )
    common(ex, "export")
    ex.add_argument(
        "--format",
        choices=["torchscript", "onnx"],
        default=None,
        help="file format (default: from the suffix, .onnx -> onnx, else torchscript)",
    )
    ex.add_argument("-o", "--out", required=True, metavar="FILE", help="output file")
    ex.add_argument("--deterministic", action="store_true", help="export the deterministic action")
    ex.add_argument(
        "--seed",
        type=int,
        default=None,
        help="ONNX: seed of the graph's random nodes (default: none, so every onnxruntime "
        "session draws the same sequence; give different seeds for different streams)",
    )
    ex.set_defaults(func=cmd_export)

    rec = sub.add_parser(
        "record",
        help="render episodes of a trained policy to a GIF or MP4",
        description="Render episodes offscreen (MuJoCo: EGL, then OSMesa, unless MUJOCO_GL is "
        "set) and write them with imageio (pip install 'bearl[video]'; from a clone: "
        "pip install -e '.[video]').",
    )
    common(rec, "record")
    rec.add_argument("-o", "--out", required=True, metavar="FILE", help="video.mp4 or out.gif")
    rec.add_argument("--episodes", type=int, default=1, help="episodes (default: 1)")
    rec.add_argument(
        "--seed",
        type=int,
        default=None,
        help="episode i is reset with seed S+i (default: the run's seed + 200000, as bearl eval)",
    )
    rec.add_argument("--env", help="render this environment (e.g. another version)")
    rec.add_argument("--deterministic", action="store_true", help="the deterministic action")
    rec.add_argument("--max-steps", type=int, default=None, help="cap each episode's length")
    rec.add_argument("--fps", type=float, default=None, help="frame rate (default: the env's)")
    rec.set_defaults(func=cmd_record)


def cmd_eval(args: argparse.Namespace) -> int:
    import statistics

    from bearl.policy.load import evaluate, load_policy

    if not 0.0 < args.confidence < 1.0:
        raise BearlError(f"--confidence must be in (0, 1), not {args.confidence}")
    policy = load_policy(args.run, args.checkpoint, env=args.env, precision=args.precision)
    res = evaluate(policy, args.episodes, args.seed, args.env, args.deterministic, args.confidence)
    how = "deterministic actions" if args.deterministic else "the algorithm's own action selection"
    last = res["seed"] + res["episodes"] - 1
    print(
        f"{res['algo']} from {res['checkpoint']} (step {res['step']}) on {res['env']}: "
        f"{res['episodes']} episodes, seeds {res['seed']}..{last}, {how}"
    )
    level = f"{100 * args.confidence:g}% CI of the mean"
    print(f"{'':<11} {'mean':>10} {'sample std':>10} {'median':>10}   {level}")
    for label, values in (("return", res["returns"]), ("normalized", res["normalized_scores"])):
        s = res[label]
        if s is None:
            continue
        ci = (
            f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
            if s["ci_low"] is not None
            else "n/a (one episode)"
        )
        std = f"{statistics.stdev(values):>10.2f}" if len(values) > 1 else f"{'n/a':>10}"
        print(f"{label:<11} {s['mean']:>10.2f} {std} {s['median']:>10.2f}   {ci}")
    if res["normalized"] is None:
        print("(no reference scores for this environment: no normalized score)")
    else:
        lo, hi = res["ref_scores"]
        print(f"(normalized: 100 * (return - ref_min) / (ref_max - ref_min), refs {lo:g}, {hi:g})")
    json_std = "; --json's std: population, ddof=0, as progress.csv" if args.json else ""
    dof = res["episodes"] - 1
    print(f"(sample std: ddof=1, as the CI's; CI: {res['ci_method']}, {dof} dof{json_std})")
    if args.json:
        text = json.dumps(res, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"json: {args.json}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bearl.policy.export import export_policy
    from bearl.policy.load import load_policy

    fmt = args.format or ("onnx" if Path(args.out).suffix.lower() == ".onnx" else "torchscript")
    policy = load_policy(args.run, args.checkpoint)
    meta = export_policy(policy, args.out, fmt, args.deterministic, seed=args.seed)
    print(f"wrote {args.out} ({fmt}): {meta['algo']} step {meta['step']}, {meta['selection']}")
    print(f"input {meta['input']} -> output {meta['output']}")
    if fmt == "torchscript":
        print(f"run it: torch.jit.load('{args.out}')(obs)")
    else:
        print(f"run it: onnxruntime.InferenceSession('{args.out}').run(None, {{'obs': obs}})[0]")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from bearl.policy.load import load_policy, resolve_checkpoint, run_env_name
    from bearl.policy.record import ensure_mujoco_gl, is_mujoco_env, record

    # choose the OpenGL backend before anything imports a renderer
    run, _ = resolve_checkpoint(args.run, args.checkpoint)
    env_name = args.env or run_env_name(run)
    if env_name and is_mujoco_env(env_name):
        ensure_mujoco_gl()
    policy = load_policy(args.run, args.checkpoint, env=args.env)
    res = record(
        policy,
        args.out,
        episodes=args.episodes,
        seed=args.seed,
        env=args.env,
        deterministic=args.deterministic,
        max_steps=args.max_steps,
        fps=args.fps,
    )
    rets = ", ".join(f"{r:.1f}" for r in res["returns"])
    print(f"wrote {res['path']}: {res['frames']} frames at {res['fps']:g} fps; returns {rets}")
    return 0


def _bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="gradient updates/s of every algorithm (vs d3rlpy), FLOPs, roofline, eval speed",
        description="Times minibatch sampling + one update after a warm-up, repeated and "
        "interleaved with d3rlpy's counterpart at the same hyperparameters when its virtualenv "
        "exists (bench/setup_peer.sh). Run it on a quiet machine: a row timed while other "
        "processes kept a core busy is marked BUSY MACHINE, and a roofline fraction above "
        "100% is refused.",
    )
    p.add_argument("--algo", default="all", help="algorithm name or 'all'")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--steps", type=int, default=200, help="timed updates per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--no-peer", action="store_true", help="do not run d3rlpy")
    p.add_argument("--no-extras", action="store_true", help="skip evaluation/rollout timing")
    p.add_argument(
        "--peer-allocator",
        "--peer_allocator",
        dest="peer_allocator",
        choices=("bearl", "default"),
        default="bearl",
        help="glibc malloc settings of the d3rlpy peer: bearl's own (its allocator kept warm, "
        "so the ratio compares the updates), or glibc's defaults (d3rlpy as installed) "
        "(default: bearl)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated hidden-layer matmul precisions: fp32, bf16 (default: fp32)",
    )
    p.add_argument(
        "--preset",
        default="bench",
        help="comma-separated settings: bench (d3rlpy's hyperparameters, the peer's) and/or "
        "paper (what bearl train runs on Hopper, warm start left out) (default: bench)",
    )
    p.add_argument(
        "--behavior_model",
        "--behavior-model",
        dest="behavior_model",
        default="joint",
        help="comma-separated: joint (the VAE fitted in every update) and/or pretrained (frozen; "
        "algorithms with a behaviour VAE; prefit updates as joint) (default: joint)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where the updates run: cpu, cuda or cuda:N (GPU rows wait for the GPU in every "
        "timing and have no d3rlpy ratio: its peer runs on CPU) (default: cpu)",
    )
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from bearl.algos import ALGORITHMS, algorithm_class
    from bearl.runs.bench import rows_to_json, run

    algos = list(ALGORITHMS) if args.algo == "all" else [algorithm_class(args.algo).name]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    precisions = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    presets = tuple(p.strip() for p in args.preset.split(",") if p.strip())
    behaviors = tuple(p.strip() for p in args.behavior_model.split(",") if p.strip())
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise BearlError(f"--device: expected cpu, cuda or cuda:N, got '{args.device}'")
    if "prefit" in behaviors:
        raise BearlError(
            "--behavior_model: prefit updates as joint does (the VAE fitted in every update); "
            "bench joint for its speed"
        )
    for name, values, allowed in (
        ("precision", precisions, ("fp32", "bf16")),
        ("preset", presets, ("bench", "paper")),
        ("behavior_model", behaviors, ("joint", "pretrained")),
    ):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise BearlError(f"--{name}: expected {' and/or '.join(allowed)}, got {bad or values}")
    rows = run(
        algos,
        threads,
        args.steps,
        args.repeats,
        args.warmup,
        peer=not args.no_peer,
        extras=not args.no_extras,
        precisions=precisions,
        presets=presets,
        behavior_models=behaviors,
        peer_allocator=args.peer_allocator,
        device=args.device,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows_to_json(rows), indent=2))
        print(f"wrote {args.json}")
    return 0


def _ope_parsers(sub) -> None:
    from bearl.config import add_dataclass_flags
    from bearl.training.fqe import FQEConfig

    p = sub.add_parser(
        "ope",
        help="estimate each snapshot's value from data alone (Fitted Q Evaluation)",
        description="For each run: FQE of its snapshots on its dataset (or --dataset), and its "
        "own critic's estimate at the same episode starts; written to RUN/ope.json (nothing "
        "else in the run folder changes; while a fit runs it is saved in RUN/ope_fit.pt "
        "every 1,000 steps, and an interrupted call goes on from there to the same result). "
        "Read by `bearl report --metric fqe` and `bearl select`.",
    )
    p.add_argument("runs", nargs="+", help="run folders, or folders of runs (one level down)")
    p.add_argument(
        "--snapshots",
        default="all",
        metavar="all|best|final|STEP,...",
        help="which snapshots (default: all; best is the step of best.pt, chosen with the "
        "simulator, for comparison)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="evaluate on this dataset instead of the run's own (e.g. held-out episodes)",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument(
        "--redo",
        action="store_true",
        help="fit again runs whose ope.json already holds these snapshots with these settings "
        "(skipped by default, so that an interrupted call goes on where it stopped)",
    )
    add_dataclass_flags(p, FQEConfig, "FQE settings")
    p.add_argument(  # the name issue #47 and the --fqe_every docs use
        "--fqe_steps", "--fqe-steps", dest="steps", type=int, default=argparse.SUPPRESS,
        metavar="INT", help="the same as --steps",
    )  # fmt: skip
    p.set_defaults(func=cmd_ope)

    s = sub.add_parser(
        "select",
        help="choose a run and snapshot from data alone (after bearl ope)",
        description="Name the run and snapshot that a rule chooses among the runs' scored "
        "snapshots, and the chosen run's settings: fqe, fqe-low (the interval's lower end), "
        "fqe-near (fqe among the snapshots acting nearest the data) and critic use data "
        "alone (a snapshot whose FQE fit diverged ranks last), final takes each run's last "
        "snapshot (ranked by FQE), best-online the simulator's evaluation "
        "score (a reference). Runs scored on several datasets get one choice per dataset. "
        "`bearl eval RUN --checkpoint step_N` then runs the choice.",
    )
    s.add_argument("runs", nargs="+", help="run folders, or folders of runs (one level down)")
    from bearl.ope.select import RULES

    s.add_argument(
        "--by", default="fqe-near", choices=list(RULES),
        help="the rule (default: fqe-near, the data-only rule whose ranking comes closest to "
        "the truth in the validation; its top choice there did about as well as the final "
        "snapshot's: docs/ope.md)",
    )  # fmt: skip
    s.set_defaults(func=cmd_select)


def cmd_ope(args: argparse.Namespace) -> int:
    from bearl.config import build
    from bearl.ope.estimate import ope_runs
    from bearl.runs.folders import find_runs
    from bearl.training.fqe import FQEConfig

    names = {f.name for f in fields(FQEConfig)}
    cfg = build(FQEConfig, {k: v for k, v in vars(args).items() if k in names}, strict=False)
    runs = find_runs(args.runs)
    for run, out in zip(runs, ope_runs(
        runs, snapshots=args.snapshots, cfg=cfg, dataset=args.dataset,
        progress=args.progress, device=args.device, redo=args.redo,
    )):  # fmt: skip
        key = "fqe" if out["normalized"] else "fqe_return"
        snaps = out["snapshots"]
        bad = sum(bool(e.get("diverged")) for e in snaps)
        kept = [e for e in snaps if not e.get("diverged") and e.get(key) is not None]
        if kept:
            best = max(kept, key=lambda e: e[key])
            unit = "" if out["normalized"] else " return"
            top = f"FQE highest at step {best['step']:,} ({best[key]:.1f}{unit})"
        else:
            top = "no FQE fit stayed in range"
        note = f", {bad} fits diverged (ranked last)" if bad else ""
        print(f"{run}/ope.json: {len(snaps)} snapshots, {top}{note}; {out['seconds']:.0f} s")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from bearl.ope.select import NEAR, select_each

    choices = select_each(args.runs, args.by)
    if len(choices) > 1:  # estimates on different data do not compare
        print(f"{len(choices)} datasets: one choice each")
    for chosen, settings in choices:
        skip = ("algorithm", "dataset")
        shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k not in skip)
        print(f"{chosen.run} at step {chosen.step:,} (by {args.by})")
        print(f"  {settings['algorithm']} on {chosen.dataset}" + (f": {shown}" if shown else ""))
        if chosen.gap_ratio is not None:
            ratio = chosen.gap_ratio
            times = f"{ratio:.1f}x" if math.isfinite(ratio) else "far above"
            line = f"  action gap {chosen.action_gap:.3g}, {times} the smallest here"
            if ratio > NEAR:  # where the validation found FQE overestimating
                line += "; FQE extrapolates for policies far from the data (docs/ope.md)"
            print(line)
        print(f"  run it: bearl eval {chosen.run} --checkpoint step_{chosen.step}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bearl import __version__

    parser = _Parser(
        prog="bearl",
        description="Offline RL around BEAR: train, evaluate and compare "
        "algorithms on fixed datasets.",
    )
    parser.add_argument("--version", action="version", version=f"bearl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _data_parser(sub)
    _plot_parser(sub)
    _report_parser(sub)
    _sweep_parser(sub)
    _policy_parsers(sub)  # eval, export, record
    _bench_parser(sub)
    _ope_parsers(sub)  # ope, select
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown flag (an abbreviated one too) is reported by the
    command it was given to, in one line naming the closest flags and the command's --help,
    not after the command's usage: exit status 2, as argparse's own errors."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = _command_parser(parser, args)
        command.exit(2, f"{command.prog}: error: {_unrecognized(command, extra, args)}\n")
    return args


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The (sub)parser of the command ``args`` ran: ``bearl train``, ``bearl data make``..."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen not in (subs[0].choices if subs else {}):
            return parser
        parser = subs[0].choices[chosen]


def _unrecognized(
    parser: argparse.ArgumentParser, extra: list[str], args: argparse.Namespace | None = None
) -> str:
    """``unrecognized arguments: ... (did you mean ...?); COMMAND --help lists its flags``: for
    each unknown flag, the flags it is the start of (at most three; flags are never
    abbreviated), else the closest one."""
    import difflib

    actions = [a for a in parser._actions if any(o.startswith("--") for o in a.option_strings)]
    flags = [o for a in actions for o in a.option_strings if o.startswith("--")]
    close: list[str] = []
    for arg in extra:
        if not arg.startswith("--"):
            continue
        name = arg.split("=")[0]
        starts = (next((o for o in a.option_strings if o.startswith(name)), None) for a in actions)
        longer = [o for o in starts if o]
        close += longer if 0 < len(longer) <= 3 else difflib.get_close_matches(name, flags, 1)
    hint = f" (did you mean {' or '.join(dict.fromkeys(close))}?)" if close else ""
    algo = getattr(args, "algo", None) if parser.prog == "bearl train" else None
    command = f"{parser.prog} --algo {algo}" if algo else parser.prog
    return f"unrecognized arguments: {' '.join(extra)}{hint}; {command} --help lists its flags"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    if not argv:
        argv = ["--help"]
    parser = build_parser()
    try:
        args: Any = _parse(parser, argv)
        return int(args.func(args) or 0)
    except BearlError as e:
        if debug:
            raise
        print(f"bearl: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's state (disk full, a path that is a file): not a bug
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"bearl: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(
            f"bearl: interrupted{': ' + str(e) if isinstance(e, RunInterrupted) else ''}",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
