"""Watch a policy: render episodes offscreen (``render_mode="rgb_array"``) to a GIF or an MP4.

MuJoCo environments need an offscreen OpenGL renderer. Unless the user chose one with
``MUJOCO_GL``, bearl tries EGL, then OSMesa, each in a short subprocess (a failed OpenGL
initialisation cannot be undone inside a process), and sets ``MUJOCO_GL`` (and
``PYOPENGL_PLATFORM`` when unset) to the first that works before anything renders. When none
works the error says which system package to install. Other environments render with their own
means (the classic-control ones with pygame).

Files are written with imageio: GIF through Pillow, MP4 through imageio-ffmpeg
(``pip install 'bearl[video]'``; from a clone ``pip install -e '.[video]'``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bearl.errors import BearlError, one_line

GL_BACKENDS = ("egl", "osmesa")
FORMATS = (".gif", ".mp4")
GIF_MAX_FPS = 50

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
r = mujoco.Renderer(m, 16, 16)
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r.update_scene(d)
r.render()
r.close()
"""

_probed: dict[str, bool] = {}


class RendererUnavailable(BearlError):
    """No way to render the environment offscreen here."""


def _probe_gl(backend: str) -> bool:
    """True when MuJoCo renders offscreen with ``MUJOCO_GL=backend`` (checked in a subprocess)."""
    if backend not in _probed:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        try:
            done = subprocess.run(
                [sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120
            )
            _probed[backend] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _probed[backend] = False
    return _probed[backend]


def is_mujoco_env(env_name: str) -> bool:
    """Whether ``env_name`` is a MuJoCo environment (it then needs an OpenGL renderer)."""
    import gymnasium as gym

    from bearl.envs import resolve_env_id

    try:
        entry = gym.spec(resolve_env_id(env_name)).entry_point
    except Exception:  # noqa: BLE001 - unknown envs are reported when they are made
        return False
    where = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return "mujoco" in str(where).lower()


def ensure_mujoco_gl() -> str:
    """Choose the offscreen OpenGL backend for MuJoCo: the user's ``MUJOCO_GL`` if set, else
    the first of EGL and OSMesa that works. Raises RendererUnavailable when none does."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    for backend in GL_BACKENDS:
        if _probe_gl(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    raise RendererUnavailable(
        "no offscreen OpenGL renderer works here for MuJoCo (tried MUJOCO_GL=egl and "
        "MUJOCO_GL=osmesa). Install one: EGL (Debian/Ubuntu: apt-get install libegl1; with a "
        "GPU, its driver's EGL) or OSMesa (apt-get install libosmesa6), or set MUJOCO_GL to a "
        "backend that works"
    )


def _writer_check(out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise BearlError(f"{out}: choose a .gif or .mp4 file name")
    try:
        import imageio  # noqa: F401
    except ImportError:
        raise BearlError(
            "writing videos needs imageio: pip install 'bearl[video]' (from a clone: "
            "pip install -e '.[video]'; or pip install imageio)"
        ) from None
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise BearlError(
                f"{out}: MP4 needs ffmpeg: pip install 'imageio[ffmpeg]' (or write a .gif)"
            ) from None
    if not out.parent.exists():
        raise BearlError(f"{out.parent}: no such folder")


def _render(env: Any, env_name: str, backend: str | None) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as e:  # noqa: BLE001 - any renderer failure is reported the same way
        msg = f"cannot render {env_name} offscreen ({one_line(e)})"
        if backend is not None:
            msg += (
                f"; MUJOCO_GL={backend}: install a working OpenGL renderer (Debian/Ubuntu: "
                "apt-get install libegl1 for EGL, or libosmesa6 for OSMesa with MUJOCO_GL=osmesa)"
            )
        elif "pygame" in str(e).lower():
            msg += "; install pygame: pip install pygame (or 'gymnasium[classic-control]')"
        raise RendererUnavailable(msg) from None
    if frame is None:
        raise RendererUnavailable(f"{env_name} returned no frame for render_mode='rgb_array'")
    return np.asarray(frame, dtype=np.uint8)


def record(
    policy: Any,
    out: str | Path,
    episodes: int = 1,
    seed: int | None = None,
    env: str | None = None,
    deterministic: bool = False,
    max_steps: int | None = None,
    fps: float | None = None,
) -> dict[str, Any]:
    """Render ``episodes`` episodes of ``policy`` to ``out`` (.gif or .mp4).

    Episode i is reset with seed ``seed + i`` (default: the run's seed + FRESH_SEED_OFFSET, as
    ``bearl eval``); ``max_steps`` caps each episode's length; ``fps`` defaults to the env's
    ``render_fps`` (a GIF keeps every k-th frame above 50 fps). Returns the file, the frames
    written, their frame rate and the episodes' returns.
    """
    import torch

    from bearl.envs import make_env
    from bearl.policy.load import episode_settings

    out = Path(out)
    _writer_check(out)
    env_name, seed = episode_settings(policy, env, episodes, seed)
    backend = ensure_mujoco_gl() if is_mujoco_env(env_name) else None

    e = make_env(env_name, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    returns: list[float] = []
    try:
        policy.check_env(e, env_name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(episodes):
                obs, _ = e.reset(seed=seed + i)
                frames.append(_render(e, env_name, backend))
                total, t, done = 0.0, 0, False
                while not done and (max_steps is None or t < max_steps):
                    obs, r, term, trunc, _ = e.step(policy.act(obs, deterministic=deterministic))
                    frames.append(_render(e, env_name, backend))
                    total, t, done = total + float(r), t + 1, bool(term or trunc)
                returns.append(total)
        rate = float(fps or e.metadata.get("render_fps") or 30)
    finally:
        e.close()
    written, rate = _write(out, frames, rate)
    return {"path": str(out), "frames": written, "fps": rate, "returns": returns}


def _write(out: Path, frames: list[np.ndarray], fps: float) -> tuple[int, float]:
    """Write the frames; returns (frames written, their frame rate)."""
    if out.suffix.lower() == ".gif":
        import imageio.v3 as iio3

        # GIF delays are whole centiseconds and viewers slow down delays under 20 ms: above
        # GIF_MAX_FPS keep every k-th frame so that the GIF still plays at about real time
        k = max(1, math.ceil(fps / GIF_MAX_FPS))
        delay_ms = max(20, 10 * round(100.0 * k / fps))
        kept = frames[::k]
        iio3.imwrite(out, np.stack(kept), duration=delay_ms, loop=0)
        return len(kept), 1000.0 / delay_ms
    import imageio.v2 as iio

    iio.mimwrite(out, frames, fps=fps, macro_block_size=2)
    return len(frames), fps
