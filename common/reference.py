"""The reference every stage is judged against: ``softmax(Q Kᵀ · scale) V`` written out in eager
PyTorch, in float64 (the truth) or in the input dtype (PyTorch's own rounding, the error budget)."""

from __future__ import annotations

import math

import torch


def causal_mask(n_q: int, n_k: int, device) -> torch.Tensor:
    """True where query i may see key j: j <= i, aligned top-left like SDPA's ``is_causal``."""
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()


def reference_attention(query, key, value, *, is_causal=False, scale=None, dtype=torch.float64):
    """Eager attention computed in ``dtype`` (float64 by default), one head at a time so that the
    N x N score matrix of a long sequence stays within memory. Differentiable."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    q, k, v = (t.to(dtype) for t in (query, key, value))
    mask = causal_mask(q.shape[-2], k.shape[-2], q.device) if is_causal else None
    rows = []
    for b in range(q.shape[0]):
        heads = []
        for h in range(q.shape[1]):
            s = (q[b, h] @ k[b, h].transpose(-1, -2)) * scale
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            heads.append(torch.softmax(s, dim=-1) @ v[b, h])
        rows.append(torch.stack(heads) if heads else q.new_empty(0, *q.shape[2:-1], v.shape[-1]))
    if not rows:
        return q.new_empty(*q.shape[:-1], v.shape[-1])
    return torch.stack(rows)
