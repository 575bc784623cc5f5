"""Property-based check: shapes, dtypes, causal flags, layouts and scales drawn by Hypothesis within
each stage's declared capabilities, compared with the float64 reference under the usual budget.

Bounded to a few examples per stage so the CPU suite stays fast; a failure Hypothesis finds is
printed as a Problem(...) and belongs in common/testing.py's problem list as a regression case."""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.testing import Problem, forward_verdict
from common.validation import interpreting
from tests.stages import STAGES, stage_or_fail

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Per stage and dtype. The GPU sweep before a release: FUZZ_EXAMPLES=50 ATTN_AUTOTUNE=0 (one
# config per call, or every new head dim would compile and time the whole tuning space).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 50 if DEVICE == "cuda" else 3))


@st.composite
def problems(draw, caps, dtype):
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
        dtype=dtype,
        layout=draw(st.sampled_from(["contiguous", "bnhd"])),
        scale=draw(st.none() | st.floats(-2.0, 2.0, allow_nan=False).filter(lambda s: s != 0)),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("stage_name", list(STAGES))
def test_fuzz_forward_against_reference(stage_name, dtype):
    stage = stage_or_fail(stage_name)
    if dtype not in stage.capabilities.dtypes:
        pytest.skip(f"{stage_name} does not take {dtype}")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(problems(stage.capabilities, dtype))
    def check(problem):
        tried.append(problem)
        verdict = forward_verdict(stage, problem, DEVICE)
        assert verdict.ok, f"{verdict}\nregression case: {problem!r}"

    tried = []
    try:
        check()
    finally:  # FUZZ_LOG=path: one line per stage and dtype, for the counts in the README
        if os.environ.get("FUZZ_LOG"):
            with open(os.environ["FUZZ_LOG"], "a") as log:
                log.write(f"{stage_name} {dtype} cases={len(tried)}\n")
