"""What a run was computed on: the torch build, the CPU's vector capability and the device.

Floating-point results depend on all three. On one platform a seed gives the same numbers bit
for bit; on a CPU with another vector capability (AVX2 against AVX-512, say) the kernels sum
in another order and a long run drifts to other numbers, by as much as one seed differs from
another. Each run directory records its platforms (``platform.json``) so that ``compare`` can
say when the runs it pairs were computed on more than one.

The libraries' instruction sets can be pinned by environment variables (docs/pretraining.md
shows the set that reproduces AVX2 numbers on an AVX-512 CPU); those that are set are part of
the platform.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import torch

# the environment variables that pin the instruction set of torch, oneDNN, MKL, faiss and
# OpenBLAS, set so that they make a newer x86 CPU compute what an AVX2 CPU computes,
# bit for bit (checked with the golden runs, tools/golden_runs.py, on an AVX-512 CPU)
AVX2_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "AVX2",
    "FAISS_SIMD_LEVEL": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
ISA_VARIABLES = tuple(AVX2_PINS)  # those a platform lists when they are set


def describe_platform(device: torch.device) -> dict[str, str]:
    """The platform of a run on ``device``: torch version, CPU capability, device name and,
    when any is set, the instruction-set variables (``pinned``)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    platform = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": name,
    }
    pinned = " ".join(f"{key}={os.environ[key]}" for key in ISA_VARIABLES if key in os.environ)
    if pinned:
        platform["pinned"] = pinned
    return platform


def platform_label(platform: dict[str, Any]) -> str:
    """One platform as a short label, e.g. ``torch 2.14.1, AVX512, cpu``."""
    label = (
        f"torch {platform.get('torch', '?')}, {platform.get('cpu_capability', '?')}, "
        f"{platform.get('device', '?')}"
    )
    return f"{label} ({platform['pinned']})" if platform.get("pinned") else label


def platform_note(labels: list[str | None]) -> str | None:
    """A warning when runs with these platform labels (:func:`platform_label`; None where a
    run recorded none) come from more than one platform, else None: the same config and
    seed give other numbers on each, so pairs across them are noisier."""
    counts = Counter(label for label in labels if label is not None)
    if len(counts) < 2:
        return None
    listed = "; ".join(f"{label} ({count} runs)" for label, count in counts.items())
    return (
        f"the runs come from {len(counts)} platforms: {listed}. The same config and seed give "
        "other numbers on each (floating-point kernels differ), so pairs across platforms are "
        "noisier; rerun the baseline on the platform of the runs it is paired with, or pin one "
        "instruction set everywhere (docs/pretraining.md; results.csv, column platform)"
    )
