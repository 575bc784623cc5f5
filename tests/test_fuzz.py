"""Property-based check: shapes, dtypes, causal flags, layouts and scales drawn by Hypothesis within
each stage's declared capabilities, compared with the float64 reference under the usual budget.

Bounded to a few examples per stage so the CPU suite stays fast; a failure Hypothesis finds is
printed as a Problem(...) and belongs in common/testing.py's problem list as a regression case."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.testing import Problem, forward_verdict
from common.validation import interpreting
from tests.stages import STAGES, stage_or_fail

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EXAMPLES = 200 if DEVICE == "cuda" else 8


@st.composite
def problems(draw, caps):
    longest = 2048 if DEVICE == "cuda" else 48
    if caps.max_seq_len is not None:
        longest = min(longest, caps.max_seq_len)
    if interpreting() and caps.interpreter_max_seq_len is not None:
        longest = min(longest, caps.interpreter_max_seq_len // 2)
    n_q = draw(st.integers(1, longest))
    n_k = draw(st.integers(1, longest)) if caps.cross_lengths else n_q
    return Problem(
        batch=draw(st.integers(1, 2)),
        heads=draw(st.integers(1, 3)),
        n_q=n_q,
        n_k=n_k,
        head_dim=draw(st.integers(caps.min_head_dim, min(caps.max_head_dim, 160))),
        causal=draw(st.booleans()) if caps.causal else False,
        dtype=draw(st.sampled_from(caps.dtypes)),
        layout=draw(st.sampled_from(["contiguous", "bnhd"])),
        scale=draw(st.none() | st.floats(-2.0, 2.0, allow_nan=False).filter(lambda s: s != 0)),
    )


@pytest.mark.parametrize("stage_name", list(STAGES))
def test_fuzz_forward_against_reference(stage_name):
    stage = stage_or_fail(stage_name)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(problems(stage.capabilities))
    def check(problem):
        verdict = forward_verdict(stage, problem, DEVICE)
        assert verdict.ok, f"{verdict}\nregression case: {problem!r}"

    check()
