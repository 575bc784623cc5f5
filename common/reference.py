"""The reference every stage is judged against: ``softmax(Q Kᵀ · scale) V`` written out in eager
PyTorch, in float64 (the truth) or in the input dtype (PyTorch's own rounding, the error budget)."""

from __future__ import annotations

import math

import torch


def causal_mask(n_q: int, n_k: int, device) -> torch.Tensor:
    """True where query i may see key j: j <= i, aligned top-left like SDPA's ``is_causal``."""
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()


# Scores materialised per matmul (float64: 128 MiB): many heads of a short sequence go through in
# one call (a 70000-head test would otherwise launch ~10 kernels per head), a long sequence one
# head at a time (16k tokens: 2 GiB of scores per head).
SCORES_PER_CALL = 1 << 24


def reference_lse(query, key, *, is_causal=False, scale=None) -> torch.Tensor:
    """The natural log-sum-exp of each row's scaled scores, in float64 (the kernels keep it in
    base 2: compare ``lse * ln 2``)."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query.double() @ key.double().transpose(-1, -2)) * scale
    if is_causal:
        scores = scores.masked_fill(~causal_mask(query.shape[-2], key.shape[-2], query.device),
                                    -math.inf)  # fmt: skip
    return scores.logsumexp(-1)


def reference_attention(query, key, value, *, is_causal=False, scale=None, dtype=torch.float64):
    """Eager attention computed in ``dtype`` (float64 by default), over groups of heads small
    enough that their N x N score matrices stay within memory (one head at a time for long
    sequences). Differentiable."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    q, k, v = (t.to(dtype) for t in (query, key, value))
    batch, heads, n_q, _ = q.shape
    n_k = k.shape[-2]
    out_shape = (batch, heads, n_q, v.shape[-1])
    if batch * heads == 0:
        return q.new_empty(out_shape)
    mask = causal_mask(n_q, n_k, q.device) if is_causal else None
    q, k, v = (t.reshape(batch * heads, *t.shape[2:]) for t in (q, k, v))
    group = max(1, SCORES_PER_CALL // max(1, n_q * n_k))
    parts = []
    for g in range(0, batch * heads, group):
        s = (q[g : g + group] @ k[g : g + group].transpose(-1, -2)) * scale
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        parts.append(torch.softmax(s, dim=-1) @ v[g : g + group])
    return torch.cat(parts).reshape(out_shape)
