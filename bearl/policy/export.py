"""Export a trained policy as a self-contained TorchScript or ONNX file.

The exported module maps a batch of observations ``obs [B, obs_dim]`` (float32) to actions
``[B, act_dim]`` in the environment's bounds; running it needs torch (TorchScript) or an ONNX
runtime, not bearl. It is :meth:`bearl.policy.Policy.module`, the very module ``Policy.act``
runs: the observation normalization hook (none today), the algorithm's ``action_rule`` (the
code its ``act`` runs in training and evaluation, defined in the algorithm's own file), and the
rescale to the env's bounds, copied to the CPU in float32 and traced.

By default the module does the algorithm's own action selection, randomness included, drawn
inside the graph (TorchScript: torch's generator, so ``torch.manual_seed`` before a call gives
the same actions as ``Policy.act`` after the same seed; ONNX: ``RandomNormal(Like)`` nodes).
BEAR's, for instance, samples ``num_eval_samples`` actions per state from its tanh-Gaussian
actor and returns the one with the highest Q_1. With ``deterministic=True`` it is the
algorithm's deterministic variant (BEAR, KL-Control: the mean action tanh(mu(s)); BCQ, BC-vae:
the VAE decoding of the latent z = 0; TD3, DQfD, BC-gaussian, BC-deterministic: their action,
which has no randomness either way).

ONNX randomness: a random node without a ``seed`` attribute starts from the same state in every
onnxruntime session, so two fresh sessions return the same "random" actions for the same
inputs. ``seed=N`` writes seeds N, N+1, ... into the file's random nodes (one stream per
seed, the same in every session); export with different seeds for different streams.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bearl.errors import BearlError
from bearl.nets import set_matmul_dtype

EXPORT_FORMAT = "bearl-exported-policy-v1"
FORMATS = ("torchscript", "onnx")


class PolicyModule(nn.Module):
    """observations -> (normalization hook) -> action rule in [-1, 1] -> env bounds."""

    def __init__(
        self,
        select: nn.Module,
        obs_dim: int,
        center: np.ndarray | None,
        half: np.ndarray | None,
        obs_shift: np.ndarray | None = None,
        obs_scale: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.select = select
        self.obs_dim = int(obs_dim)
        self.rescale = center is not None
        self.normalize = obs_shift is not None or obs_scale is not None

        def buf(x: np.ndarray | None, fill: float, n: int) -> torch.Tensor:
            return torch.as_tensor(np.full(n, fill) if x is None else x, dtype=torch.float32)

        n_act = len(center) if center is not None else 1
        self.register_buffer("action_center", buf(center, 0.0, n_act))
        self.register_buffer("action_scale", buf(half, 1.0, n_act))
        self.register_buffer("obs_shift", buf(obs_shift, 0.0, self.obs_dim))
        self.register_buffer("obs_scale", buf(obs_scale, 1.0, self.obs_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.normalize:
            x = (x - self.obs_shift) / self.obs_scale
        a = self.select(x)
        if self.rescale:
            a = a * self.action_scale + self.action_center
        return a


def describe(module: nn.Module) -> str:
    """One line saying what an action rule (or a PolicyModule around one) computes."""
    select = getattr(module, "select", module)
    return getattr(select, "description", type(select).__name__)


def build_module(policy: Any, deterministic: bool = False) -> PolicyModule:
    """A CPU float32 copy of ``policy.module(deterministic)``, gradients off, in eval mode."""
    module = copy.deepcopy(policy.module(deterministic)).cpu().float().eval()
    set_matmul_dtype(module, None)  # float32 matmuls too, whatever the policy acts with
    return module.requires_grad_(False)


def _floats(x: np.ndarray | None) -> list[float] | None:
    return None if x is None else [float(v) for v in np.asarray(x).reshape(-1)]


def metadata(policy: Any, module: PolicyModule, fmt: str, deterministic: bool) -> dict[str, Any]:
    from bearl import __version__

    return {
        "format": EXPORT_FORMAT,
        "file_format": fmt,
        "algo": policy.algo.name,
        "env": policy.env_name,
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "input": f"obs: float32 [batch, {policy.obs_dim}]",
        "output": f"action: float32 [batch, {policy.act_dim}] in the env's action bounds",
        "action_low": _floats(policy.action_low),
        "action_high": _floats(policy.action_high),
        "deterministic": deterministic,
        "selection": describe(module),
        "step": policy.step,
        "checkpoint": str(policy.checkpoint_path),
        "bearl_version": __version__,
    }


def export_policy(
    policy: Any,
    path: str | Path,
    fmt: str = "torchscript",
    deterministic: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write ``policy`` to ``path`` as ``torchscript`` or ``onnx``; returns its metadata (also
    stored in the file: TorchScript extra file ``bearl.json``, ONNX metadata_props). ``seed``:
    ONNX only, the seed of the graph's random nodes (module docstring)."""
    if fmt not in FORMATS:
        raise BearlError(f"unknown export format '{fmt}' (choose {' or '.join(FORMATS)})")
    if seed is not None and fmt != "onnx":
        raise BearlError("--seed applies to ONNX files only (TorchScript uses torch's generator)")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise BearlError(f"{path.parent}: no such folder")
    module = build_module(policy, deterministic)
    meta = metadata(policy, module, fmt, deterministic)
    if seed is not None:
        meta["seed"] = int(seed)
    example = torch.zeros(2, policy.obs_dim)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            # torch >= 2.10 marks TorchScript deprecated; it still works and needs no Python.
            # Traced, not scripted: the trace records the ops the eager rule runs, once.
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (example,), check_trace=False)
            for batch in (1, 3):  # the trace must not have fixed the batch size
                out = traced(torch.zeros(batch, policy.obs_dim))
                if tuple(out.shape) != (batch, policy.act_dim):  # pragma: no cover
                    raise BearlError(f"exported module gives shape {tuple(out.shape)}")
            torch.jit.save(traced, str(path), _extra_files={"bearl.json": json.dumps(meta)})
    else:
        _export_onnx(module, example, path, meta, policy.act_dim, seed)
    return meta


def _export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    meta: dict,
    act_dim: int,
    seed: int | None,
) -> None:
    try:
        import onnx
    except ImportError:
        raise BearlError(
            "ONNX export needs the onnx package: pip install 'bearl[export]' (from a clone: "
            "pip install -e '.[export]'; onnx, and onnxruntime to run the file)"
        ) from None
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {
        "input_names": ["obs"],
        "output_names": ["action"],
        "opset_version": 17,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        try:
            torch.onnx.export(
                module,
                (example,),
                buf,
                dynamo=False,
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                **kwargs,
            )
        except TypeError:  # pragma: no cover - a torch without the TorchScript-based exporter
            try:
                prog = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    **kwargs,
                )
            except ImportError as e:
                raise BearlError(f"ONNX export with this torch needs onnxscript ({e})") from None
            buf.write(prog.model_proto.SerializeToString())
    model = onnx.load_from_string(buf.getvalue())
    # the output is [batch, act_dim]: name the first dim and fix the second (the exporter
    # leaves an invented symbol where a shape went through a traced reshape)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    dims[1].Clear()
    dims[1].dim_value = int(act_dim)
    random_ops = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
    if seed is not None:
        nodes = [n for n in model.graph.node if n.op_type in random_ops]
        for i, node in enumerate(nodes):
            for attr in [a for a in node.attribute if a.name == "seed"]:
                node.attribute.remove(attr)
            node.attribute.append(onnx.helper.make_attribute("seed", float(seed + i)))
    model.doc_string = f"bearl {meta['algo']} policy: {meta['selection']}"
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v) if not isinstance(v, str) else v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
