"""Calls with more (batch, head) pairs than one launch can index, split into calls that fit.

Every stage's kernels put the (batch, head) pairs, or the heads and the batch separately, on a
grid axis other than the first, and CUDA caps those axes at 65535 programs: a call with
B·H = 65536 heads of a short sequence (a ViT's image batch, say) would fail inside Triton's
launcher. ``split_batch_heads`` wraps a stage's ``attention`` so such a call runs as several
calls over slices of the batch (or, past 65535 heads, of the heads too), each within the limit,
and joins their results; each slice keeps its own autograd graph, so ``backward`` works too.
"""

from __future__ import annotations

import functools

import torch

GRID_LIMIT = 65535  # CUDA's limit on a grid's second and third dimensions


def _slices(batch: int, heads: int, limit: int) -> list[list[tuple[slice, slice]]]:
    """Per batch slice, the head slices of each call: B·H at most ``limit`` in every call."""
    if heads <= limit:
        step = limit // heads
        return [[(slice(b, b + step), slice(None))] for b in range(0, batch, step)]
    return [
        [(slice(b, b + 1), slice(h, h + limit)) for h in range(0, heads, limit)]
        for b in range(batch)
    ]


def _join(parts, dim: int):
    """Concatenate results along ``dim``; a tuple result (out, lse) is joined item by item."""
    if isinstance(parts[0], tuple):
        return tuple(_join(list(items), dim) for items in zip(*parts, strict=True))
    return torch.cat(parts, dim=dim)


def split_batch_heads(attention):
    """Wrap ``attention(query, key, value, **options)`` so that no call it makes has more than
    ``GRID_LIMIT`` (batch, head) pairs. Calls within the limit, and calls the stage's own checks
    will reject (not tensors, not 4-D, mismatched batch or heads), pass straight through."""

    @functools.wraps(attention)
    def wrapper(query, key, value, **options):
        tensors = (query, key, value)
        if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in tensors):
            return attention(query, key, value, **options)
        batch, heads = query.shape[:2]
        if batch * heads <= GRID_LIMIT or any(t.shape[:2] != (batch, heads) for t in tensors):
            return attention(query, key, value, **options)
        rows = [
            _join([attention(*(t[s] for t in tensors), **options) for s in row], dim=1)
            for row in _slices(batch, heads, GRID_LIMIT)
        ]
        return _join(rows, dim=0)

    return wrapper
