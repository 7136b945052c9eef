"""Offline policy evaluation: FQE against values known in closed form, ``bearl ope`` on a run's
snapshots (ope.json, nothing else touched, one line for each bad input), ``bearl select``."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bearl.cli import main
from bearl.config import resolve
from bearl.data.dataset import Dataset
from bearl.errors import BearlError
from bearl.ope.estimate import OPEError, ope_run
from bearl.ope.select import select, select_each
from bearl.training.fqe import FQEConfig, FQETracker, fit_fqe, normalized_value
from bearl.training.loop import train

from conftest import TINY_RUN, make_random_dataset

SMALL = {**TINY_RUN, "eval_episodes": 1}
FAST = FQEConfig(steps=60, hidden=(16, 16), heads=2, batch_size=32, start_samples=2)


def bandit(n: int = 2000, episode_len: int = 20) -> Dataset:
    """States that do not matter, reward = the action (1-D, in [-1, 1]), episodes cut by time
    (no terminal), so Q(s, a) = a + gamma * V and V = E[pi] / (1 - gamma)."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return Dataset(obs, act, act[:, 0].copy(), np.roll(obs, -1, 0), np.zeros(n, bool), timeouts)


def constant(value: float):
    return lambda s: torch.full((s.shape[0], 1), value)


def test_fqe_finds_each_policys_own_value_in_one_batched_fit():
    """Two policies in one ensemble: their targets use their own actions, so each critic
    converges to its own value (+1 and -1 at gamma 0.5), not to a mixture."""
    cfg = FQEConfig(steps=1500, hidden=(32, 32), lr=3e-3, tau=0.05, heads=3, batch_size=128)
    res = fit_fqe([constant(0.5), constant(-0.5)], bandit(), cfg, gamma=0.5)
    assert res.estimate == pytest.approx([1.0, -1.0], abs=0.1)
    assert res.heads.shape == (2, 3)
    assert (res.low <= res.estimate).all() and (res.estimate <= res.high).all()


def test_init_mean_starts_the_critics_at_the_datas_mean_value():
    from bearl.training.fqe import FQE

    d = bandit()
    fqe = FQE(2, d, FQEConfig(hidden=(8,), heads=2, init_mean=True), gamma=0.9)
    expected = float(np.mean(d.rewards)) / 0.1
    assert torch.allclose(fqe.critic.out.bias, torch.full_like(fqe.critic.out.bias, expected))
    plain = FQE(2, d, FQEConfig(hidden=(8,), heads=2, init_mean=False), gamma=0.9)
    assert plain.critic.out.bias.abs().max() < 1.0  # nn.Linear's init


def test_fqe_is_reproducible_and_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = fit_fqe([constant(0.2)], bandit(), FAST, gamma=0.5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = fit_fqe([constant(0.2)], bandit(), FAST, gamma=0.5)
    c = fit_fqe([constant(0.2)], bandit(), FQEConfig(**{**vars(FAST), "seed": 1}), gamma=0.5)
    assert np.array_equal(a.heads, b.heads) and not np.array_equal(a.heads, c.heads)


def test_the_tracking_fqe_follows_a_policy_that_changes():
    """``--fqe_every``'s critic is warm-started at every call: it reaches the policy's value,
    then the new value when the policy changes (+1, then -1 at gamma 0.5)."""
    cfg = FQEConfig(hidden=(32, 32), lr=3e-3, tau=0.05, heads=1, batch_size=128)
    tracker = FQETracker(bandit(), 0.5, None, updates=500, cfg=cfg)
    for _ in range(3):
        out = tracker(constant(0.5))
    assert out["FQEReturnStart"] == pytest.approx(1.0, abs=0.1) and out["FQEScore"] is None
    assert out["FQEDiverged"] == 0  # inside [-1, 1] / (1 - 0.5)
    for _ in range(3):
        out = tracker(constant(-0.5))
    assert out["FQEReturnStart"] == pytest.approx(-1.0, abs=0.1)
    assert tracker.fqe.steps == 3000


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fqe_every_gives_a_learning_curve_without_changing_the_run(tmp_path):
    """--fqe_every logs FQEReturnStart / FQEScore into progress.csv (blank between), leaves the
    training's numbers as they are without it, and goes on exactly after a resume."""
    no_sim = {"eval_episodes": 0, "steps": 60, "fqe_updates": 5}
    plain = trained_run(tmp_path, "plain", **no_sim)
    fqe = trained_run(tmp_path, "fqe", fqe_every=40, **no_sim)
    rows = read_csv(fqe / "progress.csv")
    assert [r["Step"] for r in rows] == ["20", "40", "60"]
    assert rows[0]["FQEReturnStart"] == "" and rows[0]["FQEScore"] == ""
    assert all(np.isfinite(float(r["FQEReturnStart"])) for r in rows[1:])
    machine = {"WallTime", "UpdatesPerSecond", "MemoryMiB", *FQETracker.COLUMNS}

    def strip(rs):
        return [{k: v for k, v in r.items() if k not in machine} for r in rs]

    assert strip(rows) == strip(read_csv(plain / "progress.csv"))
    cut = trained_run(tmp_path, "cut", fqe_every=40, **{**no_sim, "steps": 40})
    cfg, _ = resolve({**SMALL, "fqe_every": 40, **no_sim})
    train(cfg, resume=cut, dataset=make_random_dataset())
    again = read_csv(cut / "progress.csv")
    assert [r["FQEReturnStart"] for r in again] == [r["FQEReturnStart"] for r in rows]


@pytest.mark.parametrize(
    "over, flag",
    [
        ({"fqe_every": 30}, "--fqe_every (30) must be a multiple of --eval_every (20)"),
        ({"fqe_every": -1}, "--fqe_every must be 0"),
        ({"fqe_updates": 0}, "--fqe_updates"),
    ],
)
def test_bad_fqe_settings_are_one_line(over, flag):
    with pytest.raises(BearlError, match=re.escape(flag)):
        resolve({**SMALL, **over})


def test_normalized_value_maps_the_discounted_references_to_0_and_100():
    gamma = 0.99
    lo, hi = -20.0, 3000.0
    per_step = lambda r: r / 1000 * (1 - gamma**1000) / (1 - gamma)  # noqa: E731
    assert normalized_value(per_step(lo), lo, hi, gamma) == pytest.approx(0.0)
    assert normalized_value(per_step(hi), lo, hi, gamma) == pytest.approx(100.0)


def trained_run(tmp_path: Path, name: str = "r", **over) -> Path:
    cfg, algo_cfg = resolve({**SMALL, "log_dir": str(tmp_path), "run_name": name, **over})
    train(cfg, algo_cfg, dataset=make_random_dataset())
    return tmp_path / name


def digests(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def test_ope_writes_one_entry_per_snapshot_and_touches_nothing_else(tmp_path):
    run = trained_run(tmp_path, steps=40)
    before = digests(run)
    out = ope_run(run, cfg=FAST, dataset=make_random_dataset())
    after = digests(run)
    assert after.pop("ope.json") and after == before
    saved = json.loads((run / "ope.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert [e["step"] for e in saved["snapshots"]] == [20, 40]
    lo, hi = saved["value_range"]
    for e in saved["snapshots"]:
        assert {"step", "fqe", "fqe_low", "fqe_high", "critic"} <= set(e)
        heads = e["fqe_heads_return"]
        assert e["diverged"] == (min(heads) < lo or max(heads) > hi)
        assert {"fqe_return", "critic_return"} <= set(e)  # the discounted returns beside
        assert e["fqe_low"] <= e["fqe"] <= e["fqe_high"]
    assert saved["normalized"] is True and saved["dataset"]["episodes"] == 12
    assert 0 < saved["cpu_seconds"] and 0 < saved["seconds"]  # core time beside wall time
    from bearl.runs.report import run_scores

    scores = run_scores(run, metric="fqe")  # bearl report --metric fqe: last and largest
    last = saved["snapshots"][-1]["fqe"]
    assert scores.final_score == pytest.approx(last)
    assert scores.best_score == pytest.approx(max(e["fqe"] for e in saved["snapshots"]))
    # a later call for one step keeps the other step's entry
    ope_run(run, snapshots="20", cfg=FAST, dataset=make_random_dataset())
    assert [e["step"] for e in json.loads((run / "ope.json").read_text())["snapshots"]] == [20, 40]


def test_ope_refuses_bad_input_in_one_line(tmp_path):
    run = trained_run(tmp_path, steps=20)
    none = trained_run(tmp_path, "none", steps=20, snapshot_every=0)
    with pytest.raises(OPEError, match="no snapshots"):
        ope_run(none, cfg=FAST, dataset=make_random_dataset())
    with pytest.raises(OPEError, match="no snapshot of step 30"):
        ope_run(run, snapshots="30", cfg=FAST, dataset=make_random_dataset())
    other_env = make_random_dataset(env_name="Hopper-v5")
    with pytest.raises(OPEError, match="a dataset of Hopper-v5, but .* trained in Pendulum-v1"):
        ope_run(run, cfg=FAST, dataset=other_env)
    one = make_random_dataset(n=50)  # a single episode: no starts to average over
    with pytest.raises(OPEError, match="1 episode; FQE's estimate and interval need"):
        ope_run(run, cfg=FAST, dataset=one)
    with pytest.raises(OPEError, match="its dataset memory cannot be loaded"):
        ope_run(run, cfg=FAST)  # the run's own dataset was in memory: gone
    # a snapshot written by another version of the algorithm (a layer of another width)
    snap = run / "snapshots" / "step_0000020.pt"
    payload = torch.load(snap, weights_only=True)
    nets = payload["algo"]["nets"]
    net = next(iter(nets))
    key = next(k for k in nets[net] if k.endswith("weight"))
    nets[net][key] = torch.zeros(nets[net][key].shape[0] + 3, nets[net][key].shape[1])
    torch.save(payload, snap)
    with pytest.raises(OPEError) as err:
        ope_run(run, cfg=FAST, dataset=make_random_dataset())
    text = str(err.value)
    assert "\n" not in text and str(snap) in text and "snapshot of step 20 does not load: " in text
    assert "size mismatch" in text and "load it with the bearl that wrote it" in text
    assert "trained by bearl" in text
    assert not (run / "ope.json").exists()


def test_bearl_ope_and_select_on_the_command_line(tmp_path, capsys, monkeypatch):
    run = trained_run(tmp_path, steps=40)
    data = tmp_path / "data.hdf5"
    from bearl.data.d4rl import write_d4rl

    write_d4rl(make_random_dataset(), data)
    args = ["ope", str(run), "--dataset", str(data), "--fqe_steps", "30", "--heads", "2"]
    assert main([*args, "--hidden", "16,16", "--batch_size", "32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ope.json: 2 snapshots, FQE highest at step" in out
    assert json.loads((run / "ope.json").read_text())["settings"]["steps"] == 30
    stamp = (run / "ope.json").stat().st_mtime_ns
    assert main([*args, "--hidden", "16,16", "--batch_size", "32", "--no-progress"]) == 0
    assert "done before" in capsys.readouterr().err  # an interrupted call goes on, not again
    assert (run / "ope.json").stat().st_mtime_ns == stamp
    assert main([*args, "--hidden", "16,16", "--batch_size", "32", "--no-progress", "--redo"]) == 0
    assert (run / "ope.json").stat().st_mtime_ns != stamp
    capsys.readouterr()
    assert main(["select", str(tmp_path), "--by", "fqe"]) == 0
    out = capsys.readouterr().out
    assert f"bearl eval {run} --checkpoint step_" in out


def write_ope(run: Path, entries: list[dict], scores: dict[int, float], algo="BC", lr=None):
    run.mkdir(parents=True)
    train = {"algo": algo, "dataset": "hopper-medium", "seed": 0}
    algo_cfg = {} if lr is None else {"lr": lr}
    (run / "params.json").write_text(
        json.dumps({"algorithm": algo, "train": train, "algo": algo_cfg, "seed": 0})
    )
    rows = "\n".join(f"{s},{v}" for s, v in scores.items())
    (run / "progress.csv").write_text(f"Step,NormalizedScore\n{rows}\n")
    (run / "ope.json").write_text(json.dumps({"snapshots": entries}))


def test_select_applies_each_rule_and_names_the_sweeps_choice(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_ope(a, [{"step": 10, "fqe": 50, "critic": 900}, {"step": 20, "fqe": 40, "critic": 10}],
              {10: 30.0, 20: 45.0}, lr=1e-3)  # fmt: skip
    write_ope(b, [{"step": 10, "fqe": 20, "critic": 5}, {"step": 20, "fqe": 45, "critic": 1}],
              {10: 60.0, 20: 20.0}, lr=3e-4)  # fmt: skip
    assert (select([tmp_path], "fqe")[0].run, select([tmp_path], "fqe")[0].step) == (a, 10)
    assert select([tmp_path], "critic")[0].step == 10 and select([tmp_path], "critic")[0].run == a
    final = select([tmp_path], "final")[0]
    assert (final.run, final.step) == (b, 20)  # the last snapshots, ranked by FQE: 45 > 40
    online, settings = select([tmp_path], "best-online")
    assert (online.run, online.step) == (b, 10)
    assert settings == {"algorithm": "BC", "dataset": "hopper-medium", "lr": 3e-4}


def test_select_ranks_a_diverged_fit_last_and_can_be_pessimistic(tmp_path):
    a = tmp_path / "a"
    entries = [
        {"step": 10, "fqe": 9000, "fqe_low": -500, "critic": 1, "diverged": True},
        {"step": 20, "fqe": 40, "fqe_low": 10, "critic": 1, "diverged": False},
        {"step": 30, "fqe": 45, "fqe_low": 5, "critic": 1, "diverged": False},
    ]
    write_ope(a, entries, {10: 1.0, 20: 45.0, 30: 40.0})
    assert select([tmp_path], "fqe")[0].step == 30  # not the diverged 9000
    assert select([tmp_path], "fqe-low")[0].step == 20  # the surer of the two
    for e in entries:
        e["diverged"] = True
    (a / "ope.json").write_text(json.dumps({"snapshots": entries}))
    assert select([tmp_path], "fqe")[0].step == 10  # all diverged: the estimates decide


def test_report_leaves_out_diverged_fits(tmp_path, capsys):
    """`bearl report --metric fqe` reads ope.json; a diverged fit's estimate is no estimate."""
    from bearl.runs.report import run_scores

    entries = [
        {"step": 10, "fqe": 40, "critic": 1, "diverged": False},
        {"step": 20, "fqe": 9e6, "critic": 2, "diverged": True},
    ]
    write_ope(tmp_path / "a", entries, {10: 30.0, 20: 45.0})
    fqe = run_scores(tmp_path / "a", metric="fqe")
    assert fqe.final_score is None and fqe.best_score == 40  # the last fit diverged: no value
    assert run_scores(tmp_path / "a", metric="critic").final_score == 2  # kept: not FQE's
    write_ope(tmp_path / "b", [{"step": 10, "fqe": 50}, {"step": 20, "fqe": 55}], {10: 1, 20: 2})
    assert main(["report", str(tmp_path), "--metric", "fqe"]) == 0
    out, err = capsys.readouterr()
    assert "a: no values of 'fqe' (FQE diverged at steps 20: left out)" in err
    assert "9000000" not in out and "| 55.0 |" in out


def test_value_range_is_what_the_rewards_allow():
    from bearl.training.fqe import value_range

    d = bandit()  # rewards in [-1, 1]
    lo, hi = value_range(d, 0.5)
    assert lo == pytest.approx(d.rewards.min() / 0.5) and hi == pytest.approx(d.rewards.max() / 0.5)
    positive = Dataset(d.observations, d.actions, d.rewards + 2.0, d.next_observations,
                       d.terminals, d.timeouts)  # fmt: skip
    assert value_range(positive, 0.5)[0] == 0.0  # an episode may end: 0 is reachable


def test_select_without_ope_says_what_to_run(tmp_path, capsys):
    trained_run(tmp_path, steps=20)
    assert main(["select", str(tmp_path)]) == 2
    assert "run `bearl ope RUN...` first" in capsys.readouterr().err


def test_bf16_fqe_runs_its_hidden_layers_in_bf16_and_finds_the_same_values():
    """--precision bf16: the hidden layers' outputs are bfloat16, the critics' output float32,
    and the batched bandit's values come out as in float32 (the targets stay float32)."""
    from bearl.training.fqe import FQE

    cfg = FQEConfig(steps=1500, hidden=(32, 32), lr=3e-3, tau=0.05, heads=2, batch_size=128)
    rules = [constant(0.5), constant(-0.5)]
    fp32 = fit_fqe(rules, bandit(), cfg, gamma=0.5)
    bf16_cfg = FQEConfig(**{**cfg.__dict__, "precision": "bf16"})
    from test_precision import _MatmulDtypes

    fqe = FQE(2, bandit(), bf16_cfg, gamma=0.5)
    with _MatmulDtypes() as mode:
        out = fqe.critic(torch.zeros(4, 3))
    # two hidden layers' matmuls in bf16 (the 1-wide output layer is a multiply-sum in fp32)
    assert mode.dtypes == [torch.bfloat16] * 2 and out.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in fqe.critic.parameters())
    bf16 = fit_fqe(rules, bandit(), bf16_cfg, gamma=0.5)
    assert bf16.estimate == pytest.approx([1.0, -1.0], abs=0.1)
    assert bf16.estimate == pytest.approx(fp32.estimate, abs=0.05)
    assert not np.array_equal(bf16.heads, fp32.heads)  # it did compute in another precision


def test_an_ope_json_from_before_a_new_setting_counts_as_done(tmp_path, capsys):
    """A setting added to FQEConfig later (e.g. precision) takes its default for files that
    lack it, so `bearl ope` does not fit them again; another value is a new fit."""
    run = trained_run(tmp_path, steps=40)
    data = make_random_dataset()
    ope_run(run, cfg=FAST, dataset=data)
    path = run / "ope.json"
    old = json.loads(path.read_text())
    del old["settings"]["precision"]
    path.write_text(json.dumps(old))
    from bearl.ope.estimate import _done

    assert _done(run, "all", FAST) is not None
    assert _done(run, "all", FQEConfig(**{**FAST.__dict__, "precision": "bf16"})) is None


class _Counted:
    """A rule that counts the states it is asked for: uniform actions in [lo, hi] (random)."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi, self.rows = lo, hi, 0

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        self.rows += s.shape[0]
        return self.lo + (self.hi - self.lo) * torch.rand(s.shape[0], 1)


def test_the_action_table_draws_each_next_action_once_and_finds_the_same_values():
    """--next_actions table: one draw per transition (not one per minibatch row), and a random
    rule's value as with fresh draws (E[a] = 0.5 and -0.25 at gamma 0.5: values 1.0 and -0.5)."""
    cfg = FQEConfig(steps=1500, hidden=(32, 32), lr=3e-3, tau=0.05, heads=2, batch_size=128)
    d = bandit()
    results = {}
    for mode in ("table", "fresh"):
        rules = [_Counted(0.0, 1.0), _Counted(-1.0, 0.5)]
        c = FQEConfig(**{**cfg.__dict__, "next_actions": mode, "start_samples": 1})
        results[mode] = fit_fqe(rules, d, c, gamma=0.5)
        starts = d.num_episodes  # the estimate's draws at the episode starts
        per_rule = len(d) if mode == "table" else cfg.steps * cfg.batch_size
        assert [r.rows for r in rules] == [per_rule + starts] * 2
    for res in results.values():
        assert res.estimate == pytest.approx([1.0, -0.5], abs=0.1)


def test_the_action_table_holds_the_rule_at_each_next_state():
    """A rule that depends on the state: the table's lookups give the same targets as drawing
    at every minibatch (same minibatches, same critics), so the same fit up to rounding."""
    rule = lambda s: torch.tanh(s[:, :1])  # noqa: E731
    cfg = FQEConfig(steps=200, hidden=(16, 16), heads=2, batch_size=64)
    fits = [
        fit_fqe([rule], bandit(), FQEConfig(**{**cfg.__dict__, "next_actions": m}), gamma=0.5)
        for m in ("table", "fresh")
    ]
    assert np.allclose(fits[0].heads, fits[1].heads, rtol=1e-5, atol=1e-6)
    wrong = lambda s: torch.tanh(s[:, 1:2])  # noqa: E731  (another state's action)
    other = fit_fqe([wrong], bandit(), cfg, gamma=0.5)
    assert not np.allclose(other.heads, fits[0].heads, rtol=1e-5, atol=1e-6)


def test_an_ope_json_from_before_the_action_table_counts_as_fresh_draws(tmp_path):
    run = trained_run(tmp_path, steps=40)
    fresh = FQEConfig(**{**FAST.__dict__, "next_actions": "fresh"})
    ope_run(run, cfg=fresh, dataset=make_random_dataset())
    path = run / "ope.json"
    old = json.loads(path.read_text())
    del old["settings"]["next_actions"]
    path.write_text(json.dumps(old))
    from bearl.ope.estimate import _done

    assert _done(run, "all", fresh) is not None
    assert _done(run, "all", FAST) is None  # the table (the default) is a new fit


def test_bad_next_actions_is_one_line(tmp_path, capsys):
    run = trained_run(tmp_path, steps=40)
    assert main(["ope", str(run), "--next_actions", "cached", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--next_actions: expected table or fresh, got 'cached'" in err


def test_bad_fqe_precision_is_one_line(tmp_path, capsys):
    run = trained_run(tmp_path, steps=40)
    assert main(["ope", str(run), "--precision", "fp16", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--precision: expected fp32 or bf16, got 'fp16'" in err


def test_action_gap_is_the_mean_squared_distance_to_the_datas_actions():
    from bearl.ope.estimate import action_gap

    d = bandit()  # 2,000 rows: all of them are used
    direct = float(np.mean((0.5 - d.actions[:, 0].astype(np.float64)) ** 2))
    assert action_gap(constant(0.5), d) == pytest.approx(direct, rel=1e-6)  # float32 actions
    noisy = lambda s: torch.rand(s.shape[0], 1)  # noqa: E731  (a sampling rule: seeded)
    assert action_gap(noisy, d, seed=3) == action_gap(noisy, d, seed=3)


def test_bearl_ope_adds_action_gaps_to_an_older_ope_json_without_fitting_again(tmp_path, capsys):
    from bearl.ope.estimate import ope_runs

    run = trained_run(tmp_path, steps=40)
    data = make_random_dataset()
    first = ope_run(run, cfg=FAST, dataset=data)
    gaps = [e["action_gap"] for e in first["snapshots"]]
    assert all(g is not None and g > 0 for g in gaps)
    old = json.loads((run / "ope.json").read_text())
    for e in old["snapshots"]:
        del e["action_gap"]
    (run / "ope.json").write_text(json.dumps(old))
    (again,) = ope_runs([run], cfg=FAST, dataset=data)
    assert "done before (action gaps added)" in capsys.readouterr().err
    assert [e["action_gap"] for e in again["snapshots"]] == gaps
    assert [e["fqe"] for e in again["snapshots"]] == [e["fqe"] for e in first["snapshots"]]
    assert json.loads((run / "ope.json").read_text()) == again


def test_select_says_how_far_its_choice_acts_from_the_data(tmp_path, capsys):
    a = tmp_path / "a"
    entries = [
        {"step": 10, "fqe": 90, "critic": 1, "action_gap": 0.9},
        {"step": 20, "fqe": 40, "critic": 1, "action_gap": 0.3},
    ]
    write_ope(a, entries, {10: 1.0, 20: 45.0})
    chosen = select([tmp_path], "fqe")[0]
    assert chosen.step == 10 and chosen.gap_ratio == pytest.approx(3.0)
    assert main(["select", str(tmp_path), "--by", "fqe"]) == 0
    assert "action gap 0.9, 3.0x the smallest here; FQE extrapolates" in capsys.readouterr().out
    entries[0]["action_gap"] = 0.4
    (a / "ope.json").write_text(json.dumps({"snapshots": entries}))
    assert main(["select", str(tmp_path), "--by", "fqe"]) == 0
    out = capsys.readouterr().out
    assert "action gap 0.4, 1.3x the smallest here\n" in out and "extrapolates" not in out


def test_select_over_several_algorithms_names_the_settings_of_the_chosen_ones_runs(tmp_path):
    write_ope(tmp_path / "a", [{"step": 10, "fqe": 50}], {10: 30.0}, lr=1e-3)
    write_ope(tmp_path / "b", [{"step": 10, "fqe": 60}], {10: 20.0}, lr=3e-4)
    write_ope(tmp_path / "c", [{"step": 10, "fqe": 10}], {10: 10.0}, algo="IQL")
    chosen, settings = select([tmp_path], "fqe")
    assert chosen.run == tmp_path / "b"
    assert settings == {"algorithm": "BC", "dataset": "hopper-medium", "lr": 3e-4}


def test_select_chooses_once_per_dataset(tmp_path, capsys):
    """Estimates on different data do not compare: one choice per dataset (the one FQE was
    fitted on, from ope.json), gap ratios among that dataset's snapshots only."""
    write_ope(tmp_path / "h1", [{"step": 10, "fqe": 50, "action_gap": 0.1}], {10: 30.0})
    write_ope(tmp_path / "h2", [{"step": 10, "fqe": 60, "action_gap": 0.15}], {10: 20.0})
    write_ope(tmp_path / "w", [{"step": 10, "fqe": 900, "action_gap": 0.9}], {10: 5.0})
    for name, source in (("h1", "hopper-medium"), ("h2", "hopper-medium"), ("w", "walker")):
        ope = json.loads((tmp_path / name / "ope.json").read_text())
        ope["dataset"] = {"source": source, "sha1": source + "-sha"}
        (tmp_path / name / "ope.json").write_text(json.dumps(ope))
    choices = select_each([tmp_path], "fqe-near")
    named = [(c.run.name, c.dataset) for c, _ in choices]
    assert named == [("h2", "hopper-medium"), ("w", "walker")]
    assert choices[1][0].gap_ratio == 1.0  # not 9x hopper's smallest gap
    with pytest.raises(BearlError, match=r"scored on 2 datasets \(hopper-medium, walker\)"):
        select([tmp_path], "fqe")
    assert select([tmp_path / "h1", tmp_path / "h2"], "fqe")[0].run.name == "h2"
    assert main(["select", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 datasets: one choice each\n")
    assert "h2 at step 10" in out and "w at step 10" in out and "on walker" in out
    # the same data under another name (a copy) is one dataset: its content hash decides
    ope = json.loads((tmp_path / "w" / "ope.json").read_text())
    ope["dataset"] = {"source": "copy-of-hopper", "sha1": "hopper-medium-sha"}
    (tmp_path / "w" / "ope.json").write_text(json.dumps(ope))
    assert len(select_each([tmp_path], "fqe")) == 1


def test_select_fqe_near_prefers_snapshots_near_the_data(tmp_path, capsys):
    a = tmp_path / "a"
    entries = [
        {"step": 10, "fqe": 9000, "diverged": True, "action_gap": 0.1},
        {"step": 20, "fqe": 90, "action_gap": 0.9},  # the highest in range, but far
        {"step": 30, "fqe": 40, "action_gap": 0.3},
        {"step": 40, "fqe": 45, "action_gap": 0.25},  # near (2.5x the smallest, 0.1, is far)
    ]
    write_ope(a, entries, {10: 1.0, 20: 5.0, 30: 40.0, 40: 45.0})
    assert select([tmp_path], "fqe")[0].step == 20
    # 0.25 > 2 x 0.1: every in-range snapshot is "far" here, so FQE decides among them
    assert select([tmp_path], "fqe-near")[0].step == 20
    entries[0]["action_gap"] = 0.2  # the smallest now 0.2: 0.3 and 0.25 are near, 0.9 is not
    (a / "ope.json").write_text(json.dumps({"snapshots": entries}))
    assert select([tmp_path], "fqe-near")[0].step == 40
    del entries[2]["action_gap"]
    (a / "ope.json").write_text(json.dumps({"snapshots": entries}))
    assert main(["select", str(tmp_path)]) == 2  # fqe-near is the default
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no action_gap" in err and "run `bearl ope`" in err
    assert "or choose --by fqe" in err


class _Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


def _kill_after(monkeypatch, saves: int) -> None:
    """Make the fit's ``saves``-th checkpoint its last: the fit stops there, as if killed."""
    import bearl.training.fqe as fqe_module

    real, done = fqe_module.save_checkpoint, []

    def save(path, payload):
        real(path, payload)
        done.append(path)
        if len(done) == saves:
            raise _Killed

    monkeypatch.setattr(fqe_module, "save_checkpoint", save)


@pytest.mark.parametrize("mode", ["table", "fresh"])
def test_an_interrupted_fqe_fit_goes_on_to_the_same_result(tmp_path, monkeypatch, capsys, mode):
    """Killed after its checkpoint at step 40 of 60, the fit goes on from there to the same
    estimates, trace and RNG draws as a fit without a break (the first rule samples); the
    next-action table is read back, not drawn again."""
    import bearl.training.fqe as fqe_module

    monkeypatch.setattr(fqe_module, "CHECKPOINT_EVERY", 20)
    cfg = FQEConfig(**{**FAST.__dict__, "next_actions": mode})
    rules = [_Counted(-1.0, 1.0), constant(0.3)]
    straight = fit_fqe(rules, bandit(), cfg, gamma=0.5, trace_every=20)
    ckpt = tmp_path / "fit.pt"
    with monkeypatch.context() as m:
        _kill_after(m, saves=3 if mode == "table" else 2)  # (the table is saved first)
        with pytest.raises(_Killed):
            fit_fqe(rules, bandit(), cfg, gamma=0.5, trace_every=20, checkpoint=ckpt)
    assert fqe_module.table_path(ckpt).exists() == (mode == "table")
    capsys.readouterr()
    rows = rules[0].rows
    resumed = fit_fqe(rules, bandit(), cfg, gamma=0.5, trace_every=20, checkpoint=ckpt)
    err = capsys.readouterr().err
    assert f"FQE: going on from {ckpt} at step 40 of 60" in err
    estimates = 100 * FAST.start_samples  # the trace's at step 60 and the final one: no table
    drawn = 2 * estimates if mode == "table" else 2 * estimates + 20 * FAST.batch_size
    assert rules[0].rows - rows == drawn
    assert ("FQE: next actions from" in err) == (mode == "table")
    assert np.array_equal(resumed.heads, straight.heads)
    assert [s for s, _ in resumed.trace] == [20, 40, 60]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(resumed.trace, straight.trace))
    plain = fit_fqe(rules, bandit(), cfg, gamma=0.5)  # (the trace draws: another stream)
    other = fit_fqe(rules, bandit(), cfg, gamma=0.5, checkpoint=tmp_path / "plain.pt")
    assert np.array_equal(other.heads, plain.heads)  # checkpoints change nothing


def test_a_checkpoint_of_another_fit_or_unreadable_is_started_over(tmp_path, monkeypatch, capsys):
    """Only a fit of the same policies, data and settings goes on (a shorter one's, to more
    steps); any other checkpoint, or one past the steps asked for, is started over."""
    import bearl.training.fqe as fqe_module

    monkeypatch.setattr(fqe_module, "CHECKPOINT_EVERY", 20)
    rules = [constant(0.3)]
    straight = fit_fqe(rules, bandit(), FAST, gamma=0.5)
    ckpt = tmp_path / "fit.pt"
    fit_fqe(rules, bandit(), FQEConfig(**{**FAST.__dict__, "lr": 1e-2}), 0.5, checkpoint=ckpt)
    capsys.readouterr()
    again = fit_fqe(rules, bandit(), FAST, gamma=0.5, checkpoint=ckpt)
    assert "FQE: starting over (" in capsys.readouterr().err
    assert np.array_equal(again.heads, straight.heads)
    # a finished fit's checkpoint: its values, with no more steps
    assert np.array_equal(fit_fqe(rules, bandit(), FAST, 0.5, checkpoint=ckpt).heads, again.heads)
    assert "at step 60 of 60" in capsys.readouterr().err
    # other data, discount or policies (the caller's key)
    for data, gamma, key in (
        (bandit(n=1000), 0.5, None),
        (bandit(), 0.9, None),
        (bandit(), 0.5, 1),
    ):
        fit_fqe(rules, data, FAST, gamma, checkpoint=ckpt, key=key)
        assert "FQE: starting over (" in capsys.readouterr().err
        fit_fqe(rules, bandit(), FAST, gamma=0.5, checkpoint=ckpt)  # the first fit's again
        capsys.readouterr()
    short = FQEConfig(**{**FAST.__dict__, "steps": 40})
    fit_fqe(rules, bandit(), short, 0.5, checkpoint=ckpt)  # a 60-step fit's: too far
    assert f"FQE: starting over ({ckpt}: a fit at step 60, past --fqe_steps 40)" in (
        capsys.readouterr().err
    )
    assert np.array_equal(fit_fqe(rules, bandit(), FAST, 0.5, checkpoint=ckpt).heads, again.heads)
    assert "at step 40 of 60" in capsys.readouterr().err  # the 40-step fit's, 20 more
    ckpt.write_bytes(b"not a checkpoint")
    assert np.array_equal(fit_fqe(rules, bandit(), FAST, 0.5, checkpoint=ckpt).heads, again.heads)
    err = capsys.readouterr().err
    assert f"FQE: starting over ({ckpt}: unreadable checkpoint" in err


def test_an_interrupted_bearl_ope_goes_on_and_leaves_only_ope_json(tmp_path, monkeypatch):
    """`bearl ope` keeps its fit in RUN/ope_fit.pt while it runs: killed, it leaves that file
    and no ope.json; run again, it writes the same entries as a call without a break and
    removes the file."""
    import bearl.training.fqe as fqe_module

    monkeypatch.setattr(fqe_module, "CHECKPOINT_EVERY", 20)
    run = trained_run(tmp_path, steps=40)
    before = digests(run)
    straight = ope_run(run, cfg=FAST, dataset=make_random_dataset())["snapshots"]
    (run / "ope.json").unlink()
    with monkeypatch.context() as m:
        _kill_after(m, saves=2)  # the table, then the fit at step 20
        with pytest.raises(_Killed):
            ope_run(run, cfg=FAST, dataset=make_random_dataset())
    assert (run / "ope_fit.pt").exists() and (run / "ope_fit_table.pt").exists()
    assert not (run / "ope.json").exists()
    assert ope_run(run, cfg=FAST, dataset=make_random_dataset())["snapshots"] == straight
    after = digests(run)
    assert after.pop("ope.json") and after == before


def test_select_with_a_snapshot_acting_exactly_as_the_data(tmp_path, capsys):
    """A gap of 0 (a policy repeating the data's actions) is the smallest: every other
    snapshot is far, and fqe-near chooses it over a higher estimate."""
    entries = [
        {"step": 10, "fqe": 90, "action_gap": 0.2},
        {"step": 20, "fqe": 40, "action_gap": 0.0},
    ]
    write_ope(tmp_path / "a", entries, {10: 5.0, 20: 40.0})
    chosen = select([tmp_path], "fqe-near")[0]
    assert chosen.step == 20 and chosen.gap_ratio == 1.0
    assert select([tmp_path], "fqe")[0].gap_ratio == math.inf
    assert main(["select", str(tmp_path), "--by", "fqe"]) == 0
    out = capsys.readouterr().out
    assert "action gap 0.2, far above the smallest here; FQE extrapolates" in out
