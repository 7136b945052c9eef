"""Policy files: small, weights-only files that hold a tanh-Gaussian policy.

A policy file is a ``torch.save`` of a dict of tensors and plain values, read back with
``torch.load(weights_only=True)`` so that loading never executes code. bearl ships behaviour
policies in this format (``bearl/data/policies/*.pt``) and uses them to generate datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bearl.errors import BearlError, one_line
from bearl.nets import TanhGaussianActor

POLICY_FORMAT = "bearl-policy-v1"


def save_policy(actor: TanhGaussianActor, path: str | Path, **meta: Any) -> None:
    """Write ``actor``'s weights and ``meta`` (env id, step, measured returns, ...) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = actor.trunk[0]
    payload = {
        "format": POLICY_FORMAT,
        "obs_dim": first.in_features,
        "act_dim": actor.mean.out_features,
        "hidden": [m.out_features for m in actor.trunk if isinstance(m, torch.nn.Linear)],
        "log_std_bounds": list(actor.log_std_bounds) if actor.log_std_bounds else None,
        "state_dict": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
        "meta": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_policy_file(path: str | Path) -> tuple[TanhGaussianActor, dict[str, Any]]:
    """Read a policy file; returns ``(actor, meta)``. Raises BearlError for anything else."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BearlError(f"{path}: policy file not found") from None
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file
        raise BearlError(f"{path}: not a bearl policy file ({one_line(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
        raise BearlError(f"{path}: not a bearl policy file (format is not {POLICY_FORMAT})")
    bounds = payload["log_std_bounds"]
    actor = TanhGaussianActor(
        payload["obs_dim"],
        payload["act_dim"],
        hidden=payload["hidden"],
        log_std_bounds=tuple(bounds) if bounds else None,
    )
    actor.load_state_dict(payload["state_dict"])
    actor.eval()
    return actor, dict(payload.get("meta", {}))
