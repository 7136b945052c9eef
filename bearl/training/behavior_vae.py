"""The behaviour model fitted once: ``behavior_model=pretrained``.

BEAR, BCQ and DQfD (``demo_action=vae``) each fit the same conditional VAE of the behaviour
policy to the same dataset. With ``behavior_model=pretrained`` the VAE is fitted alone, before
training, for ``behavior_steps`` gradient steps (its own Adam, minibatches from its own seeded
sampler, under a forked torch random state, so the run's random stream is not touched), saved in
a cache keyed by the dataset's content, the VAE's settings, the seed and the precision, and
loaded by every later run with the same key, of any of those algorithms. The algorithm then
keeps it frozen (no VAE step in its update); the checkpoints hold its weights, so a resumed run
needs no cache. The cache is ``$BEARL_CACHE/behavior`` (default ``~/.cache/bearl/behavior``).

``behavior_model=prefit`` starts from the same cached fit (the same key) and then fits the VAE
at every step, as ``joint`` does, with the algorithm's own fresh Adam: what the head start alone
changes, apart from freezing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bearl.algos.base import adam
from bearl.files import home_relative, waiting_lock, write_atomic
from bearl.perf import FlushDenormals
from bearl.progress import progress_bar

SEED_OFFSET = 7_919  # the fit's sampler and torch seed: seed + OFFSET, apart from training
CACHE_FORMAT = "bearl-behavior-vae-v1"


def cache_dir() -> Path:
    root = os.environ.get("BEARL_CACHE") or Path.home() / ".cache" / "bearl"
    return Path(root) / "behavior"


def fingerprint(dataset: Any) -> str:
    """SHA-1 of the dataset's observations and actions (what the VAE is fitted to)."""
    return dataset.digest(("observations", "actions"))


def cache_key(
    dataset: Any, algo_cfg: Any, seed: int, precision: str, scale: Any, flush: bool = True
) -> dict:
    return {
        "format": CACHE_FORMAT,
        "dataset": fingerprint(dataset),
        "obs_dim": int(dataset.obs_dim),
        "act_dim": int(dataset.act_dim),
        "action_low": [float(x) for x in scale.low],  # the actions are fitted in [-1, 1]
        "action_high": [float(x) for x in scale.high],
        "vae_hidden": list(algo_cfg.vae_hidden),
        "vae_lr": float(algo_cfg.vae_lr),
        # only when not the original's 0.5, so that the VAEs cached before it existed still match
        **({"vae_kl_weight": w} if (w := float(algo_cfg.vae_kl_weight)) != 0.5 else {}),
        "batch_size": int(algo_cfg.batch_size),
        "behavior_steps": int(algo_cfg.behavior_steps),
        "seed": int(seed),
        "precision": precision,
        "flush_denormals": flush,
    }


def load_or_fit(algo: Any, dataset: Any, cfg: Any, algo_cfg: Any, scale: Any) -> str:
    """Put the pretrained behaviour VAE into ``algo`` (from the cache, or fitted and cached
    now), frozen unless ``behavior_model=prefit``; returns one line saying which, for the
    run's log."""
    vae = algo.behavior_vae()
    flush = bool(cfg.flush_denormals) and torch.device(algo.device).type == "cpu"
    key = cache_key(dataset, algo_cfg, cfg.seed, cfg.precision, scale, flush)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"vae-{digest}.pt"
    # two runs that need the same VAE at once (a sweep's trials): one fits it, the other waits
    with waiting_lock(
        cache_dir().parent / "locks" / f"{path.name}.lock",
        "bearl: waiting for the behaviour VAE that another process is fitting",
    ):
        return _load_or_fit(algo, vae, path, key, dataset, cfg, algo_cfg, scale)


def _load_or_fit(
    algo: Any, vae: Any, path: Path, key: dict, dataset: Any, cfg: Any, algo_cfg: Any, scale: Any
) -> str:
    then = "frozen" if algo.behavior_frozen else "fitted on at every step (prefit)"
    if path.exists():
        saved = torch.load(path, map_location=algo.device, weights_only=True)
        if saved.get("key") == key:
            vae.load_state_dict(saved["state"])
            vae.requires_grad_(not algo.behavior_frozen)
            return (
                f"behaviour model: the pretrained VAE reused from the cache "
                f"({home_relative(path)}), {then}"
            )
    print(
        f"bearl: behaviour model: fitting the VAE alone for {algo_cfg.behavior_steps} steps "
        "before training (once per dataset, VAE settings, seed and precision; then cached)",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.time()
    with FlushDenormals(key["flush_denormals"]):  # as the training loop's updates
        curve = _fit(vae, dataset, algo_cfg, cfg.seed, algo.device, scale, cfg.progress)
    vae.zero_grad(set_to_none=True)  # nothing of the fit's last step is left to a prefit run
    buf = io.BytesIO()
    torch.save({"key": key, "state": vae.state_dict(), "curve": curve}, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    vae.requires_grad_(not algo.behavior_frozen)
    return (
        f"behaviour model: VAE fitted alone for {algo_cfg.behavior_steps} steps in "
        f"{time.time() - t0:.0f} s (final loss {curve[-1][1]:.4f}), cached at "
        f"{home_relative(path)}, {then}"
    )


def _fit(
    vae, dataset, algo_cfg, seed: int, device, scale, progress: bool = False
) -> list[tuple[int, float]]:
    """The VAE fitted alone; its training loss averaged over each 1,000 steps."""
    cuda = [device] if torch.device(device).type == "cuda" else []
    curve, total = [], 0.0
    bar = progress_bar(
        algo_cfg.behavior_steps, disable=not progress, unit="step", desc="fitting the VAE"
    )
    with torch.random.fork_rng(devices=cuda), bar:
        torch.manual_seed(seed + SEED_OFFSET)
        sampler = dataset.sampler(algo_cfg.batch_size, device, seed=seed + SEED_OFFSET)
        opt = adam(vae, algo_cfg.vae_lr)
        for step in range(1, algo_cfg.behavior_steps + 1):
            b = sampler.sample()
            loss = vae.loss(b.observations, scale.to_unit(b.actions))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.update()
            if step % 1000 == 0 or step == algo_cfg.behavior_steps:
                curve.append((step, total / (step - (curve[-1][0] if curve else 0))))
                total = 0.0
    return curve
