"""One set of input checks for every stage, run before anything is launched.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, outside the
limits) naming the argument and the limit, so a bad call never reaches Triton and never returns a
silently wrong answer.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch

from common.capabilities import Capabilities

_POISON = False


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def autotuning() -> bool:
    """False when ``ATTN_AUTOTUNE=0``: autotuned stages launch the first config listed for the
    call's head dim and dtype instead of compiling and timing every candidate. For sweeps over
    many shapes (the GPU fuzz run), where a search per new head dim would cost minutes."""
    return os.environ.get("ATTN_AUTOTUNE", "1") != "0"


@contextlib.contextmanager
def poisoned_outputs():
    """Make every output a stage allocates start as NaN, so an element the kernel never writes
    fails the comparison instead of passing on stale memory from an earlier call."""
    global _POISON
    old, _POISON = _POISON, True
    try:
        yield
    finally:
        _POISON = old


def new_output(shape, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Allocate a tensor a kernel will fully overwrite (NaN-filled under ``poisoned_outputs``)."""
    dtype = dtype or like.dtype
    if _POISON:
        return torch.full(shape, float("nan"), dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


def check_inputs(stage: str, caps: Capabilities, query, key, value, is_causal, scale) -> float:
    """Validate an ``attention(query, key, value, is_causal=, scale=)`` call; return the scale."""
    names = ("query", "key", "value")
    tensors = (query, key, value)
    for name, t in zip(names, tensors, strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{stage}: {name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in zip(names, tensors, strict=True):
        if not t.is_floating_point():
            raise TypeError(f"{stage}: {name} must be a floating tensor, got {t.dtype}")
    for name, t in zip(names[1:], tensors[1:], strict=True):
        if t.dtype != query.dtype:
            raise TypeError(
                f"{stage}: {name}.dtype {t.dtype} differs from query.dtype {query.dtype}"
            )
    if query.dtype not in caps.dtypes:
        allowed = ", ".join(str(d) for d in caps.dtypes)
        raise TypeError(f"{stage}: dtype {query.dtype} is not supported (supported: {allowed})")
    for name, t in zip(names, tensors, strict=True):
        if t.dim() != 4:
            raise ValueError(
                f"{stage}: {name} must have 4 dims [batch, heads, seq, head_dim], got shape "
                f"{tuple(t.shape)}"
            )
    for name, t in zip(names[1:], tensors[1:], strict=True):
        if t.device != query.device:
            raise ValueError(f"{stage}: {name} is on {t.device} but query is on {query.device}")
    if query.device.type == "cpu" and not interpreting():
        raise ValueError(
            f"{stage}: tensors are on the CPU; set TRITON_INTERPRET=1 to run the "
            "kernels under Triton's interpreter, or move them to a CUDA device"
        )
    if query.device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"{stage}: device {query.device} is not supported (cuda, or cpu with "
            "TRITON_INTERPRET=1)"
        )
    B, H, n_q, d = query.shape
    if key.shape[:2] != (B, H) or value.shape[:2] != (B, H):
        raise ValueError(
            f"{stage}: batch and heads must match: query {tuple(query.shape)}, key "
            f"{tuple(key.shape)}, value {tuple(value.shape)} (grouped-query heads are not "
            "supported)"
        )
    if key.shape != value.shape:
        raise ValueError(
            f"{stage}: key {tuple(key.shape)} and value {tuple(value.shape)} must "
            "have the same shape"
        )
    if key.shape[3] != d:
        raise ValueError(f"{stage}: key head_dim {key.shape[3]} differs from query head_dim {d}")
    n_k = key.shape[2]
    if not caps.cross_lengths and n_k != n_q:
        raise ValueError(f"{stage}: query length {n_q} and key length {n_k} must be equal")
    if d != 0 and not caps.min_head_dim <= d <= caps.max_head_dim:
        raise ValueError(
            f"{stage}: head_dim {d} is outside the supported range "
            f"{caps.min_head_dim}..{caps.max_head_dim}"
        )
    if caps.max_seq_len is not None and max(n_q, n_k) > caps.max_seq_len:
        raise ValueError(
            f"{stage}: sequence length {max(n_q, n_k)} exceeds this stage's limit "
            f"of {caps.max_seq_len}"
        )
    if d == 0:
        raise ValueError(f"{stage}: head_dim must be at least 1, got 0")
    if n_k == 0 and n_q > 0:
        raise ValueError(
            f"{stage}: key/value have sequence length 0: softmax over no keys is undefined"
        )
    if not isinstance(is_causal, bool):
        raise TypeError(f"{stage}: is_causal must be a bool, got {type(is_causal).__name__}")
    if is_causal and not caps.causal:
        raise ValueError(f"{stage}: is_causal=True is not supported by this stage")
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{stage}: scale must be a float or None, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{stage}: scale must be finite, got {scale}")
    return float(scale)


def is_empty(query: torch.Tensor) -> bool:
    """An output with no elements (batch, heads or query length 0): answered without a launch."""
    return query.numel() == 0
