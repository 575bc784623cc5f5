"""What only v05 has: host-side or per-head TMA descriptors, and the fallback to v04's kernel."""

import pytest
import torch

from common.reference import reference_attention
from common.testing import Problem, judge, make_inputs
from variants.v05_hopper import kernel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize(
    "layout, d, dtype, path",
    [
        ("contiguous", 64, torch.bfloat16, "host"),  # heads stacked: one descriptor per operand
        ("bnhd", 96, torch.bfloat16, "device"),  # a transposed view: per-head descriptors, no copy
        ("contiguous", 24, torch.float32, "host"),
        ("contiguous", 20, torch.bfloat16, "v04"),  # 40-byte rows: TMA needs 16-byte multiples
    ],
)
def test_descriptor_path_or_v04_fallback_is_correct(monkeypatch, layout, d, dtype, path):
    problem = Problem(1, 2, 37, 41, d, causal=True, dtype=dtype, layout=layout)
    q, k, v = make_inputs(problem, DEVICE)
    assert all(kernel.tma_addressable(t) for t in (q, k, v)) == (path != "v04")
    real, launched = kernel.launch_forward, []

    def spy(*args, **kwargs):
        launched.append(all(kernel.stacked_rows(t) for t in args[:3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel, "launch_forward", spy)
    out = kernel.attention(q, k, v, is_causal=True)
    assert launched == ([] if path == "v04" else [path == "host"])
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("host_desc", [True, False])
def test_ragged_tiles_never_read_the_next_head(host_desc):
    # 37 keys: the last K/V tile runs past the head's rows. A host descriptor reads the next
    # head's rows there; their probabilities are 0, but 0 * inf is NaN unless V is zeroed.
    q, k, v = make_inputs(Problem(1, 2, 29, 37, 32, dtype=torch.float32), DEVICE)
    v[:, 1] = float("inf")
    o = torch.full_like(q, float("nan"))
    lse = torch.empty(q.shape[:3], device=q.device)
    kernel.launch_forward(q, k, v, o, lse, False, 32**-0.5, host_desc=host_desc)
    ref = reference_attention(q[:, :1].double(), k[:, :1].double(), v[:, :1].double())
    torch.testing.assert_close(o[:, :1].double(), ref, rtol=0, atol=1e-5)


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
