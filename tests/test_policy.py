"""Using what was trained: load_policy, bearl eval (CI), export (TorchScript, ONNX), record."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import bearl
from bearl.algos import ALGORITHMS
from bearl.cli import main
from bearl.config import resolve
from bearl.errors import BearlError, CheckpointError
from bearl.policy.export import export_policy
from bearl.policy.load import FRESH_SEED_OFFSET, evaluate, load_policy
from bearl.policy.stats import describe, mean_confidence_interval, t_quantile
from bearl.training.evaluation import EVAL_SEED_OFFSET
from bearl.training.loop import train

from conftest import make_random_dataset

# torch >= 2.10 marks TorchScript (torch.jit.load) deprecated; the exported files still load
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

TINY = {
    "dataset": "memory",
    "env": "Pendulum-v1",
    "actor_hidden": "16,16",
    "critic_hidden": "16,16",
    "vae_hidden": "16,16",
    "batch_size": 16,
    "progress": False,
}

# (run name, algorithm settings): every registered algorithm and every BC / DQfD model
VARIANTS = {
    "BEAR": {"algo": "BEAR", "warm_start_steps": 5, "num_eval_samples": 4},
    "BCQ": {"algo": "BCQ", "num_eval_samples": 4},
    "TD3": {"algo": "TD3"},
    "TD3BC": {"algo": "TD3BC"},
    "BC-gaussian": {"algo": "BC", "bc_type": "gaussian"},
    "BC-deterministic": {"algo": "BC", "bc_type": "deterministic"},
    "BC-vae": {"algo": "BC", "bc_type": "vae"},
    "KLControl": {"algo": "KLControl"},
    "DQfD": {"algo": "DQfD"},
    "DQfD-vae": {"algo": "DQfD", "demo_action": "vae"},
    "IQL": {"algo": "IQL", "value_hidden": "16,16"},
    "CQL": {"algo": "CQL", "warm_start_steps": 5},
}
STOCHASTIC = {
    "BEAR",
    "BCQ",
    "BC-vae",
    "KLControl",
    "IQL",
    "CQL",
}  # act(deterministic=False) samples


def _train(root, name, dataset=None, **over):
    values = {**TINY, "log_dir": str(root), "run_name": name, **over}
    algo = values.get("algo", "BEAR")
    known = {"actor_hidden", "critic_hidden", "vae_hidden"}
    fields = set(bearl.algos.algorithm_class(algo).config_cls.__dataclass_fields__)
    values = {k: v for k, v in values.items() if k not in known or k in fields}
    cfg, algo_cfg = resolve(values)
    torch.set_num_threads(1)
    train(cfg, algo_cfg, dataset=dataset or make_random_dataset())
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny Pendulum runs, trained on first use and shared by the module's tests."""
    root = tmp_path_factory.mktemp("runs")
    cache: dict[str, object] = {}

    def get(name):
        if name not in cache:
            if name == "bear":  # two evaluations: best.pt and checkpoint.pt may differ
                cache[name] = _train(
                    root, name, steps=40, eval_every=20, eval_episodes=2, **VARIANTS["BEAR"]
                )
            elif name == "no-eval":
                cache[name] = _train(root, name, steps=10, eval_every=10, eval_episodes=0)
            elif name == "hopper":
                ds = make_random_dataset(
                    obs_dim=11, act_dim=3, env_name="Hopper-v5", action_scale=1.0
                )
                cache[name] = _train(
                    root, name, ds, env="Hopper-v5", algo="TD3", steps=10, eval_every=10,
                    eval_episodes=1,
                )  # fmt: skip
            else:
                cache[name] = _train(
                    root, name, steps=10, eval_every=10, eval_episodes=1, **VARIANTS[name]
                )
        return cache[name]

    return get


def _obs(n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32) * 2


# -- load_policy -----------------------------------------------------------------------------------
def test_load_policy_best_and_final(runs):
    run = runs("bear")
    best_payload = torch.load(run / "best.pt", weights_only=True)
    final = load_policy(run, "final")
    best = bearl.load_policy(run)  # the lazy top-level name; default checkpoint="best"
    assert final.step == 40 and final.checkpoint_path.name == "checkpoint.pt"
    assert best.step == best_payload["step"] == best_payload["best"]["step"]
    assert best.checkpoint_path.name == "best.pt"
    for p in (best, final):
        assert p.algo.name == "BEAR" and p.env_name == "Pendulum-v1"
        assert (p.obs_dim, p.act_dim) == (3, 1)
        assert p.config["algo"]["num_eval_samples"] == 4 and p.config["train"]["steps"] == 40
        np.testing.assert_array_equal(p.action_low, [-2.0])
        assert p.ref_scores == (-1500.0, 0.0)  # the dataset's references (params.json)
    # the weights are the checkpoint's
    saved = best_payload["algo"]["nets"]["actor"]
    for k, v in best.algo.actor.state_dict().items():
        assert torch.equal(v, saved[k])
    # a checkpoint file as run_dir, and a path as checkpoint
    assert load_policy(run / "checkpoint.pt").step == 40
    assert load_policy(run, run / "best.pt").step == best.step

    obs = _obs()
    det = best.act(obs, deterministic=True)
    with torch.no_grad():
        want = best.algo.actor.deterministic(torch.as_tensor(obs)).numpy() * 2.0  # bounds +-2
    np.testing.assert_allclose(det, want, rtol=1e-6, atol=1e-6)
    assert det.shape == (6, 1) and det.dtype == np.float32
    assert best.act(obs[0], deterministic=True).shape == (1,)  # one observation
    np.testing.assert_allclose(best.act(obs[0], deterministic=True), det[0], rtol=1e-6)
    sampled = best.act(np.repeat(obs[:1], 200, 0))
    assert np.all(np.abs(sampled) <= 2.0) and np.std(sampled) > 0  # rescaled, random
    with pytest.raises(BearlError, match=r"takes \[3\]"):
        best.act(np.zeros(5))


def test_policy_acts_as_in_training(runs):
    """TD3's action has no randomness: evaluating the final checkpoint on the training's
    evaluation episodes gives exactly the return logged in progress.csv."""
    run = runs("TD3")
    policy = load_policy(run, "final")
    with open(run / "progress.csv", newline="") as f:
        row = list(csv.DictReader(f))[-1]
    res = evaluate(policy, episodes=1, seed=policy.train_config.seed + EVAL_SEED_OFFSET)
    assert res["return"]["mean"] == pytest.approx(float(row["AverageReturn"]), abs=1e-3)
    assert res["normalized"]["mean"] == pytest.approx(float(row["NormalizedScore"]), abs=1e-3)


def test_a_bf16_run_acts_in_bf16_and_exports_in_fp32(tmp_path):
    """A run trained with --precision bf16 is loaded with bf16 matmuls, so its final checkpoint
    reproduces the training's last evaluation exactly; fp32 can be asked for, and is what an
    export holds."""
    from bearl.policy.export import export_policy

    run = _train(
        tmp_path, "td3-bf16", algo="TD3", precision="bf16", steps=20, eval_every=20, eval_episodes=1
    )
    policy = load_policy(run, "final")
    assert policy.precision == "bf16" and policy.algo.actor.matmul_dtype == torch.bfloat16
    with open(run / "progress.csv", newline="") as f:
        row = list(csv.DictReader(f))[-1]
    res = evaluate(policy, episodes=1, seed=policy.train_config.seed + EVAL_SEED_OFFSET)
    assert res["return"]["mean"] == pytest.approx(float(row["AverageReturn"]), abs=1e-3)

    fp32 = load_policy(run, "final", precision="fp32")
    assert fp32.precision == "fp32" and fp32.algo.actor.matmul_dtype is None
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    a16, a32 = policy.act(obs, deterministic=True), fp32.act(obs, deterministic=True)
    assert not np.array_equal(a16, a32)  # the hidden layers' rounding
    np.testing.assert_allclose(a16, a32, atol=0.05)
    export_policy(policy, tmp_path / "p.pt", fmt="torchscript", deterministic=True)
    exported = torch.jit.load(str(tmp_path / "p.pt"))(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(exported, a32, rtol=1e-5, atol=1e-6)
    assert policy.algo.actor.matmul_dtype == torch.bfloat16  # the export left the policy as it was


def test_load_policy_errors(runs, tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder"):
        load_policy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no best.pt"):
        load_policy(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_policy(runs("bear"), tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_policy(bad)

    run = runs("no-eval")  # never evaluated: no best.pt, actions as the algorithm gives them
    with pytest.raises(CheckpointError, match="final"):
        load_policy(run)
    policy = load_policy(run, "final")
    assert policy.action_low is None and not policy.rescale
    obs = _obs()
    with torch.no_grad():
        want = policy.algo.actor.deterministic(torch.as_tensor(obs)).numpy()
    np.testing.assert_array_equal(policy.act(obs, deterministic=True), want)

    assert main(["eval", str(tmp_path / "missing")]) == 2


def test_check_env_mismatches(runs):
    import gymnasium as gym

    policy = load_policy(runs("bear"))
    with pytest.raises(BearlError, match="Hopper-v5 does not fit this BEAR policy.*observes"):
        evaluate(policy, episodes=1, env="Hopper-v5")
    one = np.ones(1, dtype=np.float32)
    rescaled = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -one, one)
    with pytest.raises(BearlError, match="action bounds"):
        policy.check_env(rescaled, "Pendulum-v1 (rescaled)")
    policy.check_env(gym.make("Pendulum-v1"), "Pendulum-v1")


# -- bearl eval and the confidence interval --------------------------------------------------------
def test_t_quantile_table():
    table = {  # two-sided 95% (p = 0.975) unless noted
        (0.975, 1): 12.706204736174694,
        (0.975, 2): 4.302652729749462,
        (0.975, 4): 2.7764451051977934,
        (0.975, 9): 2.262157162798205,
        (0.975, 29): 2.045229642132703,
        (0.975, 100): 1.9839715185235518,
        (0.975, 5000): 1.9604385517065073,
        (0.995, 10): 3.16927267261695,
        (0.95, 3): 2.3533634348018233,
    }
    for (p, df), want in table.items():
        assert t_quantile(p, df) == pytest.approx(want, rel=1e-9), (p, df)
        assert t_quantile(1 - p, df) == pytest.approx(-want, rel=1e-9)
    assert t_quantile(0.5, 7) == 0.0


def test_confidence_interval_formula():
    x = np.array([3.0, -1.0, 4.0, 1.5, 9.0])
    lo, hi = mean_confidence_interval(x)
    half = 2.7764451051977934 * np.std(x, ddof=1) / math.sqrt(5)  # t_{0.975, 4} * s / sqrt(n)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    d = describe(x, 0.9)
    assert d["std"] == pytest.approx(np.std(x)) and d["median"] == 3.0 and d["n"] == 5
    assert d["ci_high"] - d["mean"] == pytest.approx(
        t_quantile(0.95, 4) * np.std(x, ddof=1) / math.sqrt(5)
    )
    assert mean_confidence_interval([1.0]) is None and describe([1.0])["ci_low"] is None


def test_eval_cli_output_and_json(runs, tmp_path, capsys):
    run = runs("bear")
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--episodes", "3", "--seed", "5", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "BEAR from" in text and "on Pendulum-v1: 3 episodes, seeds 5..7" in text
    assert "return" in text and "normalized" in text and "95% CI of the mean" in text
    res = json.loads(out.read_text())
    assert res["episodes"] == 3 and res["seed"] == 5 and res["deterministic"] is False
    assert res["checkpoint"].endswith("best.pt") and res["ref_scores"] == [-1500.0, 0.0]
    r = np.array(res["returns"])
    assert res["return"]["mean"] == pytest.approx(r.mean())
    assert res["return"]["std"] == pytest.approx(r.std())
    assert res["return"]["median"] == pytest.approx(np.median(r))
    half = 4.302652729749462 * r.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert res["return"]["ci_low"] == pytest.approx(r.mean() - half)
    assert res["return"]["ci_high"] == pytest.approx(r.mean() + half)
    norm = 100 * (r + 1500.0) / 1500.0
    np.testing.assert_allclose(res["normalized_scores"], norm)
    assert res["normalized"]["mean"] == pytest.approx(norm.mean())
    assert f"[{res['return']['ci_low']:.2f}, {res['return']['ci_high']:.2f}]" in text

    # same seed, same numbers (the action sampling is seeded too); default seed: fresh episodes
    again = evaluate(load_policy(run), episodes=3, seed=5)
    assert again["returns"] == res["returns"]
    default = evaluate(load_policy(run), episodes=1, deterministic=True)
    assert default["seed"] == 0 + FRESH_SEED_OFFSET and default["deterministic"]

    assert main(["eval", str(run), "--episodes", "1", "--checkpoint", "final", "--json", "-"]) == 0
    text = capsys.readouterr().out
    assert "n/a (one episode)" in text
    assert json.loads(text[text.index("{") :])["return"]["ci_low"] is None


def test_eval_cli_env_mismatch_is_one_line(runs, capsys):
    assert main(["eval", str(runs("bear")), "--episodes", "1", "--env", "Hopper-v5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bearl: error: Hopper-v5 does not fit") and "\n" not in err


# -- export ----------------------------------------------------------------------------------------
def test_every_registered_algorithm_is_covered():
    assert {v["algo"] for v in VARIANTS.values()} == set(ALGORITHMS)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_torchscript_export_matches_policy(runs, tmp_path, name):
    policy = load_policy(runs(name))
    obs = _obs(8)
    for deterministic in (True, False):
        path = tmp_path / f"{name}-{deterministic}.pt"
        meta = export_policy(policy, path, "torchscript", deterministic=deterministic)
        extra = {"bearl.json": ""}
        module = torch.jit.load(str(path), _extra_files=extra)
        assert json.loads(extra["bearl.json"])["selection"] == meta["selection"]
        # the same random draws in the same order: equal outputs, sampling included
        torch.manual_seed(3)
        want = policy.act(obs, deterministic=deterministic)
        torch.manual_seed(3)
        got = module(torch.from_numpy(obs)).numpy()
        np.testing.assert_array_equal(got, want)
        assert np.all(np.abs(got) <= 2.0)
    if name in STOCHASTIC:
        torch.manual_seed(3)
        a = module(torch.from_numpy(obs))
        assert not torch.equal(a, module(torch.from_numpy(obs)))


def test_torchscript_file_runs_without_bearl(runs, tmp_path):
    path = tmp_path / "bear.pt"
    export_policy(load_policy(runs("bear")), path)
    code = (
        "import sys; sys.modules['bearl'] = None\n"  # any import of bearl fails
        "import torch\n"
        f"m = torch.jit.load({str(path)!r})\n"
        "a = m(torch.zeros(4, 3))\n"
        "assert a.shape == (4, 1) and bool((a.abs() <= 2).all()), a\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


@pytest.mark.parametrize("name", list(VARIANTS))
def test_onnx_export_matches_policy(runs, tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    policy = load_policy(runs(name))
    obs = _obs(8)
    path = tmp_path / f"{name}-det.onnx"
    export_policy(policy, path, "onnx", deterministic=True)
    sess = ort.InferenceSession(str(path))
    got = sess.run(None, {"obs": obs})[0]
    np.testing.assert_allclose(got, policy.act(obs, deterministic=True), rtol=1e-5, atol=1e-5)
    assert sess.run(None, {"obs": obs[:1]})[0].shape == (1, 1)  # any batch size

    path = tmp_path / f"{name}.onnx"
    export_policy(policy, path, "onnx")  # the algorithm's own selection, sampled in the graph
    sess = ort.InferenceSession(str(path))
    a = sess.run(None, {"obs": obs})[0]
    assert a.shape == (8, 1) and np.all(np.abs(a) <= 2.0)
    if name in STOCHASTIC:
        assert not np.array_equal(a, sess.run(None, {"obs": obs})[0])
    else:
        np.testing.assert_allclose(a, policy.act(obs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["BEAR", "BCQ"])
def test_onnx_sampling_has_the_policys_distribution(runs, tmp_path, name):
    """The ONNX graph draws its own random numbers: compare distributions, not values."""
    ort = pytest.importorskip("onnxruntime")
    policy = load_policy(runs(name))
    path = tmp_path / "p.onnx"
    export_policy(policy, path, "onnx")
    obs = np.repeat(_obs(1, seed=4), 4000, 0)
    onnx_a = ort.InferenceSession(str(path)).run(None, {"obs": obs})[0]
    torch.manual_seed(0)
    ours = policy.act(obs)
    spread = max(float(ours.std()), 1e-3)
    assert abs(onnx_a.mean() - ours.mean()) < 0.15 * spread + 1e-4
    assert abs(onnx_a.std() - ours.std()) < 0.15 * spread + 1e-4


def test_observation_normalization_hook(runs, tmp_path):
    """A checkpoint's optional obs_normalization entry is applied by Policy and the export."""
    payload = torch.load(runs("bear") / "best.pt", weights_only=True)
    shift, scale = [0.5, -1.0, 2.0], [2.0, 0.5, 4.0]
    payload["obs_normalization"] = {"shift": shift, "scale": scale}
    path = tmp_path / "normalized.pt"
    torch.save(payload, path)
    policy = load_policy(path)
    obs = _obs()
    with torch.no_grad():
        x = (torch.as_tensor(obs) - torch.tensor(shift)) / torch.tensor(scale)
        want = policy.algo.actor.deterministic(x).numpy() * 2.0
    np.testing.assert_allclose(policy.act(obs, deterministic=True), want, rtol=1e-6)
    export_policy(policy, tmp_path / "n.pt", deterministic=True)
    got = torch.jit.load(str(tmp_path / "n.pt"))(torch.from_numpy(obs)).numpy()
    np.testing.assert_array_equal(got, policy.act(obs, deterministic=True))


def test_export_cli(runs, tmp_path, capsys):
    run = str(runs("bear"))
    out = tmp_path / "bear.ts"
    assert main(["export", run, "-o", str(out), "--format", "torchscript"]) == 0
    text = capsys.readouterr().out
    assert "argmax of Q_1 over 4 tanh-Gaussian samples" in text and out.exists()
    det = tmp_path / "bear-det.pt"
    assert main(["export", run, "--checkpoint", "final", "-o", str(det), "--deterministic"]) == 0
    assert "the mean action tanh(mu(s))" in capsys.readouterr().out
    module = torch.jit.load(str(det))
    obs = _obs()
    np.testing.assert_array_equal(
        module(torch.from_numpy(obs)).numpy(), load_policy(run, "final").act(obs, True)
    )
    if pytest.importorskip("onnx"):
        onnx_out = tmp_path / "bear.onnx"
        assert main(["export", run, "-o", str(onnx_out)]) == 0  # format from the suffix
        assert "(onnx)" in capsys.readouterr().out
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_out)).metadata_props}
        assert props["algo"] == "BEAR" and props["deterministic"] == "false"
    assert main(["export", run, "-o", str(tmp_path / "no" / "x.pt")]) == 2
    assert "no such folder" in capsys.readouterr().err


# -- record ----------------------------------------------------------------------------------------
@pytest.fixture
def clean_gl_env(monkeypatch):
    """Let bearl choose MUJOCO_GL / PYOPENGL_PLATFORM; restore both afterwards."""
    import bearl.policy.record

    for var in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(bearl.policy.record, "_probed", {})
    return monkeypatch


def test_record_error_names_packages_when_no_renderer(runs, tmp_path, clean_gl_env, capsys):
    import bearl.policy.record

    clean_gl_env.setattr(bearl.policy.record, "_probe_gl", lambda backend: False)
    with pytest.raises(bearl.policy.record.RendererUnavailable, match="libegl1.*libosmesa6"):
        bearl.policy.record.ensure_mujoco_gl()
    out = tmp_path / "hopper.gif"
    assert main(["record", str(runs("hopper")), "-o", str(out), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "no offscreen OpenGL renderer" in err and "libosmesa6" in err and not out.exists()


def test_record_mujoco_gif(runs, tmp_path, clean_gl_env, capsys):
    import bearl.policy.record

    iio = pytest.importorskip("imageio.v3")
    out = tmp_path / "hopper.gif"
    rc = main(["record", str(runs("hopper")), "-o", str(out), "--max-steps", "6"])
    if not (bearl.policy.record._probe_gl("egl") or bearl.policy.record._probe_gl("osmesa")):
        assert rc == 2 and "libegl1" in capsys.readouterr().err
        return
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    frames = iio.imread(out, index=None)
    # 7 frames at Hopper's 125 fps, every 3rd kept so that the GIF plays at about real time
    assert frames.shape[0] == 3 and frames.shape[-1] in (3, 4)


def test_record_pendulum_gif_or_clear_error(runs, tmp_path):
    """Pendulum renders with pygame: a GIF when pygame is installed, else a one-line hint."""
    pytest.importorskip("imageio")
    from bearl.policy.record import RendererUnavailable, record

    policy = load_policy(runs("bear"))
    out = tmp_path / "pendulum.gif"
    try:
        import pygame  # noqa: F401
    except ImportError:
        with pytest.raises(RendererUnavailable, match="pip install pygame"):
            record(policy, out, max_steps=3)
        return
    res = record(policy, out, max_steps=3, seed=1)
    assert out.exists() and res["frames"] == 4 and len(res["returns"]) == 1


def test_record_output_checks(runs, tmp_path, monkeypatch):
    from bearl.policy.record import record

    policy = load_policy(runs("bear"))
    with pytest.raises(BearlError, match=r"\.gif or \.mp4"):
        record(policy, tmp_path / "x.avi")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(BearlError, match=r"imageio\[ffmpeg\]"):
        record(policy, tmp_path / "x.mp4")


def test_onnx_output_dims_are_named_and_a_seed_fixes_the_stream(runs, tmp_path):
    ort = pytest.importorskip("onnx") and pytest.importorskip("onnxruntime")
    import onnx

    policy = load_policy(runs("BEAR"))
    obs = _obs(8)
    paths = {}
    for seed in (None, 1, 2):
        paths[seed] = tmp_path / f"s{seed}.onnx"
        export_policy(policy, paths[seed], "onnx", seed=seed)
    dims = onnx.load(str(paths[1])).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", policy.act_dim]

    def first_run(seed):  # a fresh session each time
        return ort.InferenceSession(str(paths[seed])).run(None, {"obs": obs})[0]

    np.testing.assert_array_equal(first_run(1), first_run(1))  # one seed: one stream
    assert not np.array_equal(first_run(1), first_run(2))  # another seed: another stream
    with pytest.raises(BearlError, match="ONNX files only"):
        export_policy(policy, tmp_path / "x.pt", "torchscript", seed=1)


def test_checkpoints_record_their_widths_and_old_ones_still_load(runs, tmp_path):
    run = runs("TD3")
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    assert payload["spaces"] == {"obs_dim": 3, "act_dim": 1}
    del payload["spaces"]  # as a checkpoint written before the widths were recorded
    torch.save(payload, tmp_path / "old.pt")
    old = load_policy(run, checkpoint=tmp_path / "old.pt")
    assert (old.obs_dim, old.act_dim) == (3, 1)
    obs = _obs(4)
    np.testing.assert_array_equal(old.act(obs), load_policy(run, "final").act(obs))
    # the recorded widths are what is read: wrong ones fail on the first layer's shape
    payload["spaces"] = {"obs_dim": 4, "act_dim": 1}
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(BearlError, match="weights do not fit"):
        load_policy(run, checkpoint=tmp_path / "wrong.pt")
