"""What only v05 has: the choice between its TMA kernel and v04's pointer kernel."""

import pytest
import torch

from common.reference import reference_attention
from common.testing import Problem, judge, make_inputs
from variants.v05_hopper import kernel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize(
    "layout, d, dtype, tma",
    [
        ("contiguous", 64, torch.bfloat16, True),
        ("bnhd", 96, torch.bfloat16, True),  # a transposed view: read in place, no copy
        ("contiguous", 24, torch.float32, True),
        ("contiguous", 20, torch.bfloat16, False),  # 40-byte rows: TMA needs 16-byte multiples
    ],
)
def test_tma_path_or_v04_fallback_is_correct(monkeypatch, layout, d, dtype, tma):
    problem = Problem(1, 2, 37, 41, d, causal=True, dtype=dtype, layout=layout)
    q, k, v = make_inputs(problem, DEVICE)
    assert all(kernel.tma_addressable(t) for t in (q, k, v)) == tma
    real, launched = kernel.launch_forward, []

    def spy(*args, **kwargs):
        launched.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel, "launch_forward", spy)
    out = kernel.attention(q, k, v, is_causal=True)
    assert bool(launched) == tma
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lazy_rescale_when_later_keys_dominate(dtype):
    # Keys grow along the sequence, so a row's max rises by hundreds (in base-2 units) after its
    # first tile: without the deferred rescale firing, exp2(s - m) would overflow fp32.
    q, k, v = make_inputs(Problem(1, 2, 40, 200, 32, dtype=dtype), DEVICE)
    growth = torch.linspace(1, 100, 200, device=DEVICE, dtype=torch.float32)[:, None]
    k = (k.float() * growth).to(dtype)
    out = kernel.attention(q, k, v)
    ref = reference_attention(q.double(), k.double(), v.double())
    # Scores reach ~10^2, so the budget is judged against PyTorch's own error in this dtype.
    verdict = judge("growing keys", out, ref, reference_attention(q, k, v, dtype=dtype))
    assert verdict.ok, str(verdict)
