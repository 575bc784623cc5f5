"""Cost models: the FLOPs a stage does and the bytes it moves through device memory for a
problem, so the report can set the model beside the measurement.

FLOPs are the two matmuls, 4·B·H·Nq·Nk·d (halved for causal). Bytes count Q read and O written
once, plus K and V read as often as the stage's design reads them: once per query (v01, v02) or
once per block of queries (the tiled stages). Causal halves the K/V reads.
"""

from __future__ import annotations

import math

from common.timing import attention_flops


def _elt(p) -> int:
    return p.dtype.itemsize


def _kv_fraction(p) -> float:
    """Fraction of the keys a causal query sees on average (top-left aligned)."""
    if not p.causal:
        return 1.0
    seen = sum(min(i + 1, p.n_k) for i in range(p.n_q)) if p.n_q <= 65536 else p.n_q * p.n_k / 2
    return seen / (p.n_q * p.n_k)


def kv_read_per_query(p) -> float:
    """Every query's program reads all the keys and values it sees (v01, v02)."""
    heads = p.batch * p.heads
    qo = 2 * p.n_q * p.head_dim
    kv = 2 * p.n_q * p.n_k * p.head_dim * _kv_fraction(p)
    return heads * (qo + kv) * _elt(p)


def kv_read_per_block(block_m: int):
    """K and V read once per block of ``block_m`` queries (tiled stages)."""

    def bytes_moved(p) -> float:
        heads = p.batch * p.heads
        blocks = math.ceil(p.n_q / block_m)
        qo = 2 * p.n_q * p.head_dim
        kv = 2 * blocks * p.n_k * p.head_dim * _kv_fraction(p)
        return heads * (qo + kv) * _elt(p)

    bytes_moved.__doc__ = f"K and V read once per block of {block_m} queries."
    return bytes_moved


def model(stage, p) -> dict:
    """FLOPs, bytes and arithmetic intensity of ``stage`` on problem ``p``."""
    flops = attention_flops(p.batch, p.heads, p.n_q, p.n_k, p.head_dim, p.causal)
    moved = stage.module.BYTES_MOVED(p) if hasattr(stage.module, "BYTES_MOVED") else None
    return {"flops": flops, "bytes": moved, "intensity": flops / moved if moved else None}
