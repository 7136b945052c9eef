"""Time d3rlpy's counterpart of a bearl algorithm; prints one JSON line.

Runs in its own virtualenv (``bench/setup_peer.sh``): d3rlpy 2.8 pins gymnasium 1.0, which
bearl does not use. Called by ``bearl bench``; it measures the same thing as bearl's side:
minibatch sampling + one gradient update, after a warm-up, with the same hyperparameters.
"""

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--algo", required=True, choices=["BEAR", "BCQ", "TD3", "BC", "TD3BC", "IQL", "CQL"]
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--obs-dim", type=int, default=11)
    p.add_argument("--act-dim", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--vae-hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--n-mmd", type=int, default=4)
    p.add_argument("--n-target", type=int, default=10)
    p.add_argument("--n-action-samples", type=int, default=100)
    p.add_argument("--size", type=int, default=50_000)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    import d3rlpy
    from d3rlpy.models import VectorEncoderFactory

    rng = np.random.default_rng(0)
    n = a.size
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    timeouts[-1] = True
    ds = d3rlpy.dataset.MDPDataset(
        rng.normal(size=(n, a.obs_dim)).astype(np.float32),
        rng.uniform(-1, 1, size=(n, a.act_dim)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        np.zeros(n, bool),
        timeouts,
    )
    enc = VectorEncoderFactory(a.hidden)
    vae = VectorEncoderFactory(a.vae_hidden)
    if a.algo == "BEAR":
        cfg = d3rlpy.algos.BEARConfig(
            batch_size=a.batch,
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            imitator_encoder_factory=vae,
            n_mmd_action_samples=a.n_mmd,
            n_target_samples=a.n_target,
            n_action_samples=a.n_action_samples,
            warmup_steps=0,
        )
    elif a.algo == "BCQ":
        cfg = d3rlpy.algos.BCQConfig(
            batch_size=a.batch,
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            imitator_encoder_factory=vae,
            n_action_samples=a.n_action_samples,
        )
    elif a.algo == "TD3":
        cfg = d3rlpy.algos.TD3Config(
            batch_size=a.batch, actor_encoder_factory=enc, critic_encoder_factory=enc
        )
    elif a.algo == "TD3BC":  # TD3PlusBCConfig's defaults: alpha 2.5
        cfg = d3rlpy.algos.TD3PlusBCConfig(
            batch_size=a.batch, actor_encoder_factory=enc, critic_encoder_factory=enc
        )
    elif a.algo == "IQL":  # IQLConfig's defaults: expectile 0.7, weight_temp 3, max_weight 100
        cfg = d3rlpy.algos.IQLConfig(
            batch_size=a.batch,
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            value_encoder_factory=enc,
        )
    elif a.algo == "CQL":  # its defaults otherwise (bearl's CQL bench_settings match them)
        cfg = d3rlpy.algos.CQLConfig(
            batch_size=a.batch,
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            n_action_samples=a.n_action_samples,
        )
    else:
        cfg = d3rlpy.algos.BCConfig(batch_size=a.batch, encoder_factory=enc)
    algo = cfg.create(device="cpu:0")
    algo.build_with_dataset(ds)
    buffer = ds

    def step() -> None:
        algo.update(buffer.sample_transition_batch(a.batch))

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"updates_per_s": a.steps / dt, "d3rlpy": d3rlpy.__version__}))


if __name__ == "__main__":
    main()
