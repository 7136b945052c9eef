"""Does d3rlpy's BEAR actor gradient contain the support constraint? One update, no training.

    .venv-d3rlpy/bin/python studies/hopper_suite/d3rlpy_bear_grad.py

Runs in the peer virtualenv (``bench/setup_peer.sh``). Builds d3rlpy's BEAR (its defaults,
warm-up over) on random Hopper-shaped data, and compares the actor's gradient from d3rlpy's own
actor step with (a) the gradient of the SAC part of the loss alone and (b) the gradient of the
full loss, SAC + alpha * (MMD - threshold), as BEAR defines it. Every gradient uses the same
minibatch and the same random draws. Prints the norms of the differences, then the same for
the actor step with ``fix_alpha_update`` (peer_d3rlpy_train.py). If d3rlpy's step matches the
SAC part and not the full loss, the MMD term does not reach the actor.
"""

from __future__ import annotations

import numpy as np
import torch


def main() -> None:
    import d3rlpy
    from d3rlpy.algos.qlearning.torch.sac_impl import SACImpl
    from d3rlpy.models.torch import get_parameter
    from d3rlpy.torch_utility import TorchMiniBatch
    from peer_d3rlpy_train import fix_alpha_update

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 2000
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    data = d3rlpy.dataset.MDPDataset(
        rng.normal(size=(n, 11)).astype(np.float32),
        rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        np.zeros(n, bool),
        timeouts,
    )
    d3rlpy.seed(0)
    algo = d3rlpy.algos.BEARConfig(warmup_steps=0, batch_size=64).create(device="cpu:0")
    algo.build_with_dataset(data)
    impl = algo.impl
    batch = TorchMiniBatch.from_batch(
        data.sample_transition_batch(64),
        gamma=0.99,
        compute_returns_to_go=False,
        device="cpu:0",
        observation_scaler=None,
        action_scaler=None,
        reward_scaler=None,
    )
    actor = list(impl.modules.policy.parameters())
    log_alpha = get_parameter(impl.modules.log_alpha)
    log_temp = get_parameter(impl.modules.log_temp)
    start = [t.detach().clone() for t in (log_alpha, log_temp)]

    def grad(step) -> torch.Tensor:
        """The actor's gradient after ``step``. Each step also moves alpha and the SAC
        temperature (their optimizers step inside the actor loss); both are restored first."""
        with torch.no_grad():
            log_alpha.copy_(start[0])
            log_temp.copy_(start[1])
        torch.manual_seed(1)
        impl.modules.actor_optim.zero_grad()
        step()
        return torch.cat([p.grad.flatten() for p in actor])

    def sac_part() -> None:
        action = impl.modules.policy(batch.observations)
        SACImpl.compute_actor_loss(impl, batch, action).actor_loss.backward()

    def full_loss() -> None:
        action = impl.modules.policy(batch.observations)
        loss = SACImpl.compute_actor_loss(impl, batch, action).actor_loss
        (loss + impl._compute_mmd_loss(batch.observations)).backward()

    g_sac, g_full = grad(sac_part), grad(full_loss)
    g_d3rlpy = grad(lambda: impl.compute_actor_grad(batch))
    fix_alpha_update(algo)
    g_fixed = grad(lambda: impl.compute_actor_grad(batch))
    print(f"d3rlpy {d3rlpy.__version__}, alpha {float(start[0].exp()):.3g}; gradient norms:")
    print(f"  SAC part alone                        {g_sac.norm():.6f}")
    print(f"  full loss - SAC part (the MMD term)   {(g_full - g_sac).norm():.6f}")
    print(f"  d3rlpy's actor step - SAC part        {(g_d3rlpy - g_sac).norm():.6f}")
    print(f"  d3rlpy's actor step - full loss       {(g_d3rlpy - g_full).norm():.6f}")
    print(f"  fixed actor step - full loss          {(g_fixed - g_full).norm():.6f}")


if __name__ == "__main__":
    main()
