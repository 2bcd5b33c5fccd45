"""The machine a figure or a model was made on: its CPU and the vector features that decide
how fast TensorFlow's kernels run (benchmark results and base-model provenance both record
them)."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


VECTOR_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_tile",
    "amx_int8",
)
"""The CPU features that decide how fast TensorFlow's and oneDNN's kernels run."""


def cpu_flags() -> list[str]:
    """The vector features of VECTOR_FLAGS this CPU reports, in that order."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return []
    return [flag for flag in VECTOR_FLAGS if flag in flags]
