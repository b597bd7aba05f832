"""Numeric precision of training and embedding: fp32, or bf16 autocast where the hardware runs it natively.

bf16 autocast runs matrix products in bfloat16 (8 exponent bits, like fp32, so no loss scaling
is needed) and keeps weights, optimizer state and losses in fp32. On hardware with native bf16
units it is about 2.5x faster for this encoder (110 vs 44 examples/s on a 2-core AVX512-BF16 CPU,
issue 10); elsewhere it is emulated and slower than fp32, so ``"auto"`` only picks it where it is
native.

Torch is imported inside the functions that need it, so that importing this module (for
:data:`PRECISION_SETTINGS`, say) stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISION_SETTINGS = ("fp32", "bf16", "auto")
"""Accepted training and embedding precision settings (the ONNX predictors' are
``mtt_helpers.backends.PREDICTOR_PRECISIONS``)."""

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs with bf16 matrix instructions (Cooper Lake, Sapphire Rapids and later, Zen 4+)."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The :data:`CPU_BF16_FLAGS` this CPU has, read from the ``flags`` line of ``/proc/cpuinfo``
    (Linux); empty anywhere else (macOS, Windows, Arm, no ``/proc``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[-1].split())
            return tuple(flag for flag in CPU_BF16_FLAGS if flag in present)
    return ()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions: ``avx512_bf16`` or ``amx_bf16`` among its
    ``/proc/cpuinfo`` flags (:func:`cpu_bf16_flags`). Anywhere else (macOS, Windows, Arm, no
    ``/proc``) it answers ``False``: those CPUs were not measured, and fp32 is the safe choice there.
    """
    return bool(cpu_bf16_flags())


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether a CUDA device has bf16 tensor cores: compute capability 8.0 (Ampere) or later.

    ``torch.cuda.is_bf16_supported()`` alone also answers ``True`` on older GPUs that only
    emulate bf16, which is why the capability is checked as well.
    """
    import torch

    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """Turns a precision setting into ``"bf16"`` or ``"fp32"`` for ``device``.

    ``"auto"`` is ``"bf16"`` on a CUDA device with native bf16 (:func:`cuda_has_native_bf16`)
    and on a CPU with native bf16 (:func:`cpu_has_native_bf16`); ``"fp32"`` everywhere else
    (including Apple's ``mps``). ``"bf16"`` and ``"fp32"`` are returned as they are: an
    explicit ``"bf16"`` runs (emulated, slowly) even where it is not native.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISION_SETTINGS`.
    """
    if precision not in PRECISION_SETTINGS:
        raise ValueError(f"precision must be one of {PRECISION_SETTINGS}, got {precision!r}.")
    if precision != "auto":
        return precision
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast_context(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """A context that runs forward passes on ``device`` in ``precision`` (resolved as above).

    bf16: ``torch.autocast(device_type, dtype=torch.bfloat16)``; fp32: a context that does nothing.
    Outputs computed inside may be bf16: cast them with ``.float()`` before storing or
    computing a loss.
    """
    import torch

    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
