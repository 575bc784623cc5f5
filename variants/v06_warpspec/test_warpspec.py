"""What only v06 has: the single masked-or-not loop, and the hand-over to v05's forward."""

import math

import pytest
import torch

from common.reference import reference_attention, reference_lse
from common.testing import Problem, make_inputs, record_kernel_or_fallback
from variants.v06_warpspec import kernel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _spy(monkeypatch):
    """Record whether each forward call ran v06's kernel (True) or v05's forward (False)."""
    return record_kernel_or_fallback(monkeypatch, kernel, kernel.v05)


@pytest.mark.parametrize(
    "n_q, n_k, d, causal, layout, dtype, warp_specialized",
    [
        (64, 64, 128, False, "contiguous", torch.bfloat16, True),  # whole tiles: no mask
        (37, 41, 80, False, "contiguous", torch.float16, True),  # ragged keys: every tile masked
        (70, 50, 96, False, "bnhd", torch.bfloat16, True),  # per-head strided views
        (70, 50, 96, True, "contiguous", torch.bfloat16, False),  # causal: v05's forward
        (33, 33, 64, False, "contiguous", torch.bfloat16, False),  # d<=64: v05's forward
        (33, 33, 96, True, "contiguous", torch.float32, False),  # fp32: no MMA, v05's forward
        (33, 33, 256, False, "contiguous", torch.bfloat16, False),  # d=256: v05's forward
        (33, 33, 100, False, "contiguous", torch.bfloat16, False),  # 200-byte rows: not for TMA
    ],
)
def test_kernel_or_v05_handover_is_correct(
    monkeypatch, n_q, n_k, d, causal, layout, dtype, warp_specialized
):
    problem = Problem(2, 2, n_q, n_k, d, causal=causal, dtype=dtype, layout=layout)
    q, k, v = make_inputs(problem, DEVICE)
    calls = _spy(monkeypatch)
    out = kernel.attention(q, k, v, is_causal=causal)
    assert calls == [warp_specialized]
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("n_q, n_k", [(70, 50), (50, 70), (64, 64)])
def test_causal_launch_is_correct(n_q, n_k):
    # attention() hands causal calls to v05, but the tuning script launches the kernel causal.
    q, k, v = make_inputs(Problem(1, 2, n_q, n_k, 96, dtype=torch.bfloat16), DEVICE)
    o = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device=q.device)
    kernel.launch_forward(q, k, v, o, lse, True, 96**-0.5)
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=True)
    torch.testing.assert_close(o.double(), ref, rtol=0, atol=2e-2)
    # The kernel keeps the log-sum-exp in base 2; every row, both consumers' halves, is written.
    want = reference_lse(q, k, is_causal=True, scale=96**-0.5)
    torch.testing.assert_close(lse.double() * math.log(2.0), want, rtol=0, atol=1e-2)


@pytest.mark.parametrize(
    "causal, n_kv, block_n, masked",
    [
        (False, 256, 128, False),
        (False, 200, 128, True),
        (False, 192, 64, False),
        (True, 256, 128, True),
    ],
)
def test_every_tile_is_masked_when_some_tile_needs_it(causal, n_kv, block_n, masked):
    # A wrong False would give the zero-filled key rows past N_KV a score of 0 instead of -inf.
    assert kernel._masked(dict(IS_CAUSAL=causal, N_KV=n_kv, BLOCK_N=block_n)) == masked
