"""Process-level speed settings shared by training and benchmarks, and what the other processes
on the machine leave of it."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import time

_TUNED = False
# glibc's malloc settings of tune_allocator: never serve a block below 32 MiB with fresh mmap
# pages, never give the top of the heap back, and grow it 64 MiB at a time
MMAP_THRESHOLD, TRIM_THRESHOLD, TOP_PAD = 32 * 1024 * 1024, 1 << 30, 64 << 20
# the same settings for another process (read by glibc at its start): ``bearl bench`` gives them
# to the d3rlpy peer, so that both sides of a comparison run with the same allocator
GLIBC_TUNABLES = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
    f":glibc.malloc.top_pad={TOP_PAD}"
)


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS.

    PyTorch on CPU allocates and frees the same large activation buffers every update. By
    default glibc serves blocks above its mmap threshold with fresh ``mmap`` pages and unmaps
    them on free, so every update pays page faults to zero them again. Raising the mmap
    threshold to its maximum (32 MiB) and never trimming the heap made BEAR's update about 35%
    faster on a 2-core machine (docs/performance.md). Linux/glibc only; a no-op elsewhere.
    Returns whether the settings were applied.
    """
    global _TUNED
    if _TUNED or not sys.platform.startswith("linux"):
        return _TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1
    ok &= libc.mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1
    ok &= libc.mallopt(m_top_pad, TOP_PAD) == 1
    _TUNED = bool(ok)
    return _TUNED


class FlushDenormals:
    """Within the block, float arithmetic on this thread treats denormal numbers (below
    1.2e-38 in float32) as zero and flushes denormal results to zero (x86's FTZ and DAZ bits,
    ``torch.set_flush_denormal``); a no-op when ``on`` is false or the CPU cannot.

    Why the gradient updates run inside it: the Adam moments of a weight whose gradient is zero
    (behind a dead ReLU unit: in the study's BCQ walker2d-medium run at step 65,000 all 750
    units of the VAE encoder's second layer are dead, so its first two layers get none) shrink
    by 0.9 and 0.999 a step until they are denormal, and x86 CPUs compute on denormals through a
    slow microcode path. At that step 22-44 % of the entries of the run's Adam states were
    denormal and its update ran at 24 updates/s; from the same checkpoint it runs 46 with them
    flushed, and 500 updates give the same bits either way (``studies/speed/denormals.py``;
    docs/performance.md, "Denormals"): an Adam step computed from a denormal moment is below
    1e-30, far below what a float32 weight can hold. Nothing guarantees the same bits over a
    whole run; ``--flush_denormals false`` computes on them.

    The bits belong to the calling thread. Evaluation and dataset rollouts stay outside the
    block, so MuJoCo never runs with them; torch's worker threads (``--threads`` > 1) are
    covered when they were started by :func:`flush_denormals_in_workers`.
    """

    __slots__ = ("on",)

    def __init__(self, on: bool = True) -> None:
        self.on = bool(on)

    def __enter__(self) -> FlushDenormals:
        if self.on:
            _set_flush_denormal(True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.on:
            _set_flush_denormal(False)


def flush_denormals_in_workers() -> None:
    """Start torch's CPU worker threads now, with denormals flushed in them (a new thread copies
    its creator's FTZ/DAZ bits); this thread is left as it was. Call it after
    ``torch.set_num_threads`` and before any other parallel operation: worker threads that
    already exist are not changed. Nothing to do on one thread."""
    import torch

    if torch.get_num_threads() < 2:
        return
    _set_flush_denormal(True)
    try:
        torch.ones(1 << 20).add_(1.0)  # large enough to run in parallel: the pool starts here
    finally:
        _set_flush_denormal(False)


def _set_flush_denormal(on: bool) -> bool:
    import torch

    return bool(torch.set_flush_denormal(on))


def resident_mib() -> float:
    """This process's resident memory in MiB (``/proc/self/status`` on Linux; elsewhere the
    peak so far from ``getrusage``, the nearest portable figure)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def native_bf16(device: str = "cpu") -> bool:
    """Whether bfloat16 matmuls run natively: on CPU the ``avx512_bf16`` or ``amx_bf16`` flag
    in /proc/cpuinfo (elsewhere torch converts to float32 and back, and gains little or loses);
    on CUDA, torch's answer for the current GPU."""
    if str(device).startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine() -> dict[str, object]:
    """The CPU a run or benchmark ran on, as written beside its figures: its model name,
    family and model numbers (Zen 3 and Zen 5 EPYCs share a name), the CPUs this process may
    use, and whether bf16 matmuls are native."""
    info: dict[str, object] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("model name", "cpu family", "model") and key not in info:
                    info[key] = value
                if not line.strip() and info:  # the first processor's block is enough
                    break
    except OSError:
        pass
    return {
        "cpu": str(info.get("model name") or platform.processor() or platform.machine()),
        "family": int(info["cpu family"]) if str(info.get("cpu family", "")).isdigit() else None,
        "model": int(info["model"]) if str(info.get("model", "")).isdigit() else None,
        "cpus": usable_cores(),
        "native_bf16": native_bf16(),
    }


def machine_line(m: dict[str, object] | None = None) -> str:
    """``machine()`` in one line: ``AMD EPYC (family 25 model 1), 2 CPUs, native bf16: no``."""
    m = m or machine()
    fam = f" (family {m['family']} model {m['model']})" if m.get("family") is not None else ""
    return f"{m['cpu']}{fam}, {m['cpus']} CPUs, native bf16: {'yes' if m['native_bf16'] else 'no'}"


# -- other processes on the machine ----------------------------------------------------------------
class CpuWatch:
    """How many cores other processes kept busy from its start to :meth:`others`: the machine's
    busy time (``/proc/stat``) less this process's own CPU time and its finished children's
    (``os.times``), over the wall time. Linux only (elsewhere ``others`` is None)."""

    def __init__(self) -> None:
        self.start = _cpu_sample()

    def others(self) -> float | None:
        end = _cpu_sample()
        if self.start is None or end is None or end[1] <= self.start[1]:
            return None
        busy, wall, own = (b - a for a, b in zip(self.start, end))
        return max(0.0, (busy - own) / wall)


def _cpu_sample() -> tuple[float, float, float] | None:
    """(seconds the machine's CPUs were busy, wall clock, this process's CPU seconds)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = (sum(ticks[:8]) - idle) / hz  # user nice system idle iowait irq softirq steal
    t = os.times()
    return busy, time.monotonic(), t.user + t.system + t.children_user + t.children_system


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def others_busy_cores(seconds: float = 0.25) -> float | None:
    """Cores other processes keep busy now, measured over ``seconds`` (:class:`CpuWatch`);
    where that cannot be measured, the 1-minute load average (which counts this process too)."""
    watch = CpuWatch()
    if watch.start is not None:
        time.sleep(seconds)
        return watch.others()
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


_WARNED_THREADS = False


def thread_warning(threads: int) -> str | None:
    """A warning, once per process, when ``threads`` torch threads outnumber the cores that
    other processes leave free: a thread waiting for a busy core holds up every matrix multiply
    of the update (BEAR on 2 threads beside one busy core of 2 ran 4 times slower than on 1,
    docs/performance.md). None when they fit (or when one thread is used)."""
    global _WARNED_THREADS
    if threads <= 1 or _WARNED_THREADS:
        return None
    cores, busy = usable_cores(), others_busy_cores()
    if busy is None or threads <= cores - busy + 0.5:
        return None
    _WARNED_THREADS = True
    return (
        f"{threads} torch threads, but other processes keep {busy:.1f} of the {cores} cores "
        "busy: a thread waiting for a core stalls every update (BEAR beside one busy core of 2: "
        "9.8 updates/s on 2 threads, 39.5 on 1; docs/performance.md); --threads 1 is faster here"
    )
