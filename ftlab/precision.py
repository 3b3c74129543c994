"""Mixed precision: which float type the forward pass runs in, decided from the real device.

bfloat16 only helps where the GPU computes it natively; elsewhere torch emulates
it (slow, and some convolutions fail), so :func:`amp_dtype` asks the hardware
rather than the name of the setting.
"""

from __future__ import annotations

import torch

__all__ = ["amp_dtype", "autocast"]


def amp_dtype(device: str | torch.device, amp: bool | str = True) -> torch.dtype | None:
    """The autocast dtype for ``device`` (``None``: plain float32).

    ``amp=True`` means bfloat16 on a CUDA GPU that computes it natively (compute
    capability >= 8.0: A100, H100, RTX 30xx/40xx) and float16 -- with a
    GradScaler in :func:`ftlab.train.fit` -- on older GPUs (T4, V100), whose bfloat16 is
    only emulated: slow, and some convolutions fail. (``torch.cuda.is_bf16_supported()``
    alone counts emulation as support.) On the CPU ``amp=True`` keeps float32.
    ``amp="bf16"`` or ``"fp16"`` forces that dtype on any device, CPU autocast
    included; ``amp=False`` is float32.

    >>> amp_dtype("cpu") is None  # the CPU trains in float32 unless told otherwise
    True
    >>> amp_dtype("cpu", "bf16")
    torch.bfloat16
    """
    device = torch.device(device)
    if amp is False:
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp is not True:
        raise ValueError(f"amp must be True, False, 'bf16' or 'fp16', got {amp!r}")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if _native_bf16(device) else torch.float16


def _native_bf16(device: torch.device) -> bool:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if torch.cuda.get_device_capability(index) < (8, 0):
        return False
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``'s type; a no-op for ``dtype=None``.

    One ``with`` statement for both cases, so the training loop has no branch.

    >>> layer = torch.nn.Linear(4, 2)
    >>> with autocast(torch.device("cpu"), torch.bfloat16):
    ...     low = layer(torch.ones(1, 4))
    >>> with autocast(torch.device("cpu"), None):
    ...     full = layer(torch.ones(1, 4))
    >>> low.dtype, full.dtype
    (torch.bfloat16, torch.float32)
    """
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
