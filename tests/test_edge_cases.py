"""Numerical edge cases for every stage, against the float64 reference and SDPA's behaviour."""

import pytest
import torch

from common import grid_limits
from common.reference import reference_attention
from common.testing import (
    Problem,
    backward_verdicts,
    forward_verdict,
    judge,
    make_inputs,
    torch_matmul_precision,
)
from tests.stages import STAGES, stage_or_fail

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(params=list(STAGES))
def stage(request):
    return stage_or_fail(request.param)


def head_dim(caps):
    return max(caps.min_head_dim, 32)


# numpy warns about all-NaN reductions inside the interpreter; the NaN is the point here.
nan_inputs = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@nan_inputs
def test_nan_in_a_key_reaches_only_the_rows_that_see_it(stage):
    n = 40
    q, k, v = make_inputs(Problem(1, 2, n, n, head_dim(stage.capabilities)), DEVICE)
    k[0, 1, 25] = float("nan")
    out = stage.attention(q, k, v, is_causal=True)
    rows_nan = out[0, 1].isnan().any(-1)
    assert rows_nan[25:].all(), "rows that attend the NaN key must be NaN, as in the reference"
    assert not rows_nan[:25].any(), "rows before the NaN key (causal) must not see it"
    assert not out[0, 0].isnan().any(), "another head must not see it"
    ref = reference_attention(q, k, v, is_causal=True)
    assert judge("rows before the NaN", out[0, 1, :25], ref[0, 1, :25], ref[0, 1, :25]).error < 1e-5


@nan_inputs
def test_nan_in_a_query_stays_in_its_row(stage):
    q, k, v = make_inputs(Problem(1, 1, 33, 33, head_dim(stage.capabilities)), DEVICE)
    q[0, 0, 7, 3] = float("nan")
    out = stage.attention(q, k, v)
    rows_nan = out[0, 0].isnan().any(-1)
    assert rows_nan[7] and rows_nan.sum() == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_scores_stay_finite_and_correct(stage, dtype):
    # x100 inputs: scores of order 1e4; a softmax without the running max overflows.
    p = Problem(1, 2, 37, 37, head_dim(stage.capabilities), causal=True, dtype=dtype)
    if not p.fits(stage.capabilities):
        pytest.skip(f"{dtype} not supported")
    q, k, v = (t * 100 for t in make_inputs(p, DEVICE))
    out = stage.attention(q, k, v, is_causal=True)
    ref = reference_attention(q, k, v, is_causal=True)
    with torch_matmul_precision(stage.capabilities):
        lowp = reference_attention(q, k, v, is_causal=True, dtype=dtype)
    verdict = judge("x100", out, ref, lowp)
    assert torch.isfinite(out).all()
    # Here any fp32 implementation's error is set by the rounding of the scores (an fp32 ulp of
    # |s| ~ 1e4, passed through exp and weighted by V), and two summation orders can differ by
    # more than 2x: allow 4 ulps of that floor on top of the usual budget (~1.7 here, on outputs of
    # order 100; measured errors ~0.1). A broken online softmax is off by O(|V|) ~ 100.
    scores = (q.double() @ k.double().transpose(-1, -2)) * q.shape[-1] ** -0.5
    floor = (
        4 * torch.finfo(torch.float32).eps * scores.abs().max() * v.double().square().mean().sqrt()
    )
    assert verdict.error <= verdict.budget + floor.item(), f"{verdict} + floor {floor.item():.3e}"


def test_expanded_key_value_are_read_not_assumed_dense(stage):
    # stride-0 (broadcast) K and V, as from .expand(): every key identical.
    caps = stage.capabilities
    d = head_dim(caps)
    q = torch.randn(2, 2, 19, d, device=DEVICE)
    k = torch.randn(2, 2, 1, d, device=DEVICE).expand(2, 2, 23, d)
    v = torch.randn(2, 2, 23, d, device=DEVICE)
    out = stage.attention(q, k, v, is_causal=True)
    ref = reference_attention(q, k, v, is_causal=True)
    verdict = judge(
        "expanded", out, ref, reference_attention(q, k, v, is_causal=True, dtype=torch.float32)
    )
    assert verdict.ok, str(verdict)


def test_forward_is_bitwise_reproducible(stage):
    q, k, v = make_inputs(Problem(1, 2, 29, 29, head_dim(stage.capabilities)), DEVICE)
    first = stage.attention(q, k, v, is_causal=True)
    assert torch.equal(first, stage.attention(q, k, v, is_causal=True))


# CUDA caps a grid's second and third axes at 65535 programs, and every stage puts the (batch,
# head) pairs there: past that, attention() runs as calls over slices of the batch (or heads).
# The interpreter has no cap, so on CPU the limit is lowered to 5 and the shapes with it: the
# slicing and joining are checked there, the launches themselves on a GPU.
SPLIT_SHAPES = [(2, 40000), (1, 70000)] if DEVICE == "cuda" else [(3, 2), (1, 7)]


@pytest.mark.parametrize("batch, heads", SPLIT_SHAPES)
def test_more_heads_than_one_launch_indexes_run_in_slices(stage, monkeypatch, batch, heads):
    if DEVICE == "cpu":
        monkeypatch.setattr(grid_limits, "GRID_LIMIT", 5)
    caps = stage.capabilities
    dtype = torch.float32 if torch.float32 in caps.dtypes else torch.bfloat16
    p = Problem(batch, heads, 3, 3, head_dim(caps), causal=caps.causal, dtype=dtype)
    assert batch * heads > grid_limits.GRID_LIMIT
    if caps.backward:
        verdicts = backward_verdicts(stage, p, DEVICE)
    else:
        verdicts = [forward_verdict(stage, p, DEVICE)]
    assert all(v.ok for v in verdicts), "; ".join(str(v) for v in verdicts if not v.ok)


@pytest.mark.parametrize("batch, heads, limit", [(7, 3, 5), (1, 12, 5), (3, 11, 4), (4, 1, 4)])
def test_slices_cover_every_batch_head_pair_once_within_the_limit(batch, heads, limit):
    seen = torch.zeros(batch, heads, dtype=torch.int64)
    rows = grid_limits._slices(batch, heads, limit)
    for row in rows:
        assert len({(s[0].start, s[0].stop) for s in row}) == 1, "one batch slice per row"
        for s in row:
            assert seen[s].numel() <= limit
            seen[s] += 1
    assert (seen == 1).all()
