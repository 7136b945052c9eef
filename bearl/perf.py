"""Process-level speed settings shared by training and benchmarks."""

from __future__ import annotations

import ctypes
import sys

_TUNED = False


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
    ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1
    ok &= libc.mallopt(m_trim_threshold, 1 << 30) == 1
    ok &= libc.mallopt(m_top_pad, 64 << 20) == 1
    _TUNED = bool(ok)
    return _TUNED


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
