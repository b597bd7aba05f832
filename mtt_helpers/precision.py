"""Numeric precision of training and embedding: the fastest mixed precision the hardware runs natively.

* bf16 autocast runs matrix products in bfloat16, which keeps fp32's exponent range, so losses need
  no scaling. Weights, optimizer state and losses stay fp32.
* fp16 autocast runs them in float16, whose range is narrow: small gradients underflow to zero
  unless the loss is scaled up before ``backward`` and the gradients scaled back down before the
  step (``torch.amp.GradScaler``, which also skips a step whose gradients overflowed).
* ``"auto"`` picks bf16 where it is native (a CPU with ``avx512_bf16`` or ``amx_bf16``, a CUDA GPU of
  compute capability 8.0 or later), fp16 on a CUDA GPU without native bf16 (a T4 or V100, whose tensor
  cores run fp16), and fp32 elsewhere, where the cheaper formats would be emulated and slower.
  Chapter 03 measures the speed and the scores of the precisions the reader's machine offers.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISION_SETTINGS = ("fp32", "bf16", "fp16", "auto")
"""Accepted training and embedding precisions (the ONNX runtime's are ``fp32``, ``int8`` and ``int8-safe``)."""

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs with bf16 matrix instructions (Cooper Lake, Sapphire Rapids and later, Zen 4+)."""

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The autocast dtype of each mixed precision."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The :data:`CPU_BF16_FLAGS` this CPU has, read from ``/proc/cpuinfo`` (Linux); empty anywhere else."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[-1].split())
            return tuple(flag for flag in CPU_BF16_FLAGS if flag in present)
    return ()


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether a CUDA device has bf16 tensor cores: compute capability 8.0 (Ampere) or later.

    ``torch.cuda.is_bf16_supported()`` alone also answers ``True`` on older GPUs that only emulate bf16.
    """
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"`` for ``device`` (see the module docstring for ``"auto"``).

    An explicit ``"bf16"``, ``"fp16"`` or ``"fp32"`` is returned as it is, even where it is emulated.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISION_SETTINGS`.
    """
    if precision not in PRECISION_SETTINGS:
        raise ValueError(f"precision must be one of {PRECISION_SETTINGS}, got {precision!r}.")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_bf16_flags() else "fp32"
    return "fp32"


def autocast_context(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """Forward passes on ``device`` in ``precision`` (resolved as above): ``torch.autocast`` for bf16 and
    fp16, nothing for fp32. Outputs may be bf16 or fp16: cast them with ``.float()`` before a loss."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if precision in DTYPES:
        return torch.autocast(device.type, dtype=DTYPES[precision])
    return contextlib.nullcontext()


def describe_precision(precision: str, device: torch.device | str) -> str:
    """One line for the reader: the device and the precision a run uses there, and why."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        where = f"CUDA GPU {name} (compute capability {major}.{minor})"
        why = {"bf16": "native bf16", "fp16": "no native bf16: fp16 with loss scaling", "fp32": "asked for fp32"}
    else:
        flags = cpu_bf16_flags()
        where = f"{device.type.upper()}" + (f" with {' and '.join(flags)}" if flags else " without bf16 instructions")
        why = {"bf16": "native bf16" if flags else "asked for bf16 (emulated)", "fp16": "asked for fp16",
               "fp32": "no native bf16" if not flags else "asked for fp32"}
    return f"device: {where}; precision: {resolved} ({why[resolved]})"
