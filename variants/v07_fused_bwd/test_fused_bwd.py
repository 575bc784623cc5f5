"""What only v07 has: the hand-over to v04's backward, keys no query sees, and both ways of
summing dQ (element atomics everywhere; TMA reduce-adds on a Hopper GPU)."""

import pytest
import torch

from common.testing import (
    Problem,
    assert_grads_close,
    grads,
    make_inputs,
    reference_grads,
)
from common.validation import poisoned_outputs
from variants.v07_fused_bwd import kernel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HOPPER = DEVICE == "cuda" and torch.cuda.get_device_capability()[0] >= 9


def _ours(q, k, v, causal):
    return kernel.attention(q, k, v, is_causal=causal)


@pytest.mark.parametrize(
    "n_q, n_k, d, causal, dtype, layout, fused",
    [
        (70, 50, 64, False, torch.bfloat16, "contiguous", True),  # ragged query and key tiles
        (50, 70, 128, True, torch.float16, "contiguous", True),  # causal keys past every query
        (33, 33, 96, True, torch.bfloat16, "bnhd", True),  # per-head strided views
        (33, 33, 24, False, torch.float16, "contiguous", True),  # 48-byte rows: still TMA
        (33, 33, 64, False, torch.float32, "contiguous", False),  # fp32: no MMA, v04
        (33, 33, 256, False, torch.bfloat16, "contiguous", False),  # d > 128: v04
        (33, 33, 100, False, torch.bfloat16, "contiguous", False),  # 200-byte rows: v04
    ],
)
def test_fused_or_v04_backward_is_correct(monkeypatch, n_q, n_k, d, causal, dtype, layout, fused):
    calls = []
    real = kernel.launch_backward
    monkeypatch.setattr(
        kernel, "launch_backward", lambda *a, **kw: calls.append(True) or real(*a, **kw)
    )
    q, k, v = make_inputs(Problem(2, 2, n_q, n_k, d, causal, dtype, layout), DEVICE)
    do = torch.randn(q.shape, device=DEVICE).to(dtype)
    with poisoned_outputs():  # an unwritten dK/dV row (e.g. keys no query sees) stays NaN
        got = grads(q, k, v, do, causal, _ours)
    assert calls == ([True] if fused else [])
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert_grads_close(got, reference_grads(q, k, v, do, causal), tol)


def test_expanded_grad_output_is_copied_for_tma():
    # loss = out.sum() hands autograd a stride-0 dO, which TMA cannot address.
    q, k, v = make_inputs(Problem(1, 2, 40, 40, 64, dtype=torch.bfloat16), DEVICE)
    do = torch.ones(1, 1, 1, 1, device=DEVICE, dtype=torch.bfloat16).expand(q.shape)
    got = grads(q, k, v, do, False, _ours)
    assert_grads_close(got, reference_grads(q, k, v, do, False), 2e-2)


@pytest.mark.parametrize(
    "dq_tma",
    [False, pytest.param(True, marks=pytest.mark.skipif(not HOPPER, reason="TMA: Hopper GPU"))],
)
@pytest.mark.parametrize("causal", [False, True])
def test_dq_summed_by_atomics_or_tma(dq_tma, causal):
    # Several key blocks add into every dQ row: a lost or doubled add would show at once.
    n, d = 200, 64
    q, k, v = make_inputs(Problem(1, 3, n, n, d, dtype=torch.bfloat16), DEVICE)
    do = torch.randn(q.shape, device=DEVICE).to(q.dtype)
    o, lse = kernel.v06._forward(q, k, v, causal, d**-0.5)
    dq_acc = kernel.dq_buffer(q)
    dk, dv = torch.full_like(k, float("nan")), torch.full_like(v, float("nan"))
    kernel.launch_backward(do, q, k, v, lse, kernel.v04.preprocess(do, o), dq_acc, dk, dv, causal,
                           d**-0.5, dq_tma=dq_tma)  # fmt: skip
    dq = dq_acc.view(q.shape)
    assert_grads_close((dq, dk, dv), reference_grads(q, k, v, do, causal), 2e-2)
