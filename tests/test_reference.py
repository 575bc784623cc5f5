"""The reference and the error budget: they must be able to fail."""

from types import SimpleNamespace

import torch

from common import testing
from common.capabilities import Capabilities
from common.reference import reference_attention
from common.testing import Problem, judge, make_inputs


def test_reference_matches_sdpa():
    q, k, v = make_inputs(Problem(2, 3, 19, 23, 16, causal=True, dtype=torch.float64), "cpu")
    ref = reference_attention(q, k, v, is_causal=True)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ref, sdpa)


def test_budget_rejects_a_wrong_result_and_nan():
    q, k, v = make_inputs(Problem(1, 2, 33, 33, 32, dtype=torch.bfloat16), "cpu")
    ref = reference_attention(q, k, v)
    lowp = reference_attention(q, k, v, dtype=torch.bfloat16)
    assert judge("same", lowp, ref, lowp).ok
    wrong = lowp.clone()
    wrong[0, 1, 5, 7] += 0.05
    assert not judge("off by 0.05", wrong, ref, lowp).ok
    wrong[0, 1, 5, 7] = float("nan")
    assert not judge("nan", wrong, ref, lowp).ok
    # Reading keys one past the end changes the answer too much to pass.
    shifted = reference_attention(q, k.roll(1, dims=2), v, dtype=torch.bfloat16)
    assert not judge("shifted keys", shifted, ref, lowp).ok


def test_budget_rejects_small_fp32_errors():
    q, k, v = make_inputs(Problem(1, 2, 33, 33, 32), "cpu")
    ref = reference_attention(q, k, v)
    lowp = reference_attention(q, k, v, dtype=torch.float32)
    assert judge("same", lowp, ref, lowp).ok
    wrong = lowp.clone()
    wrong[0, 0, 3, 3] += 1e-3
    assert not judge("off by 1e-3", wrong, ref, lowp).ok


def test_backward_references_are_float64(monkeypatch):
    # Autograd returns a leaf's gradient in the leaf's dtype: gradients taken through the fp16
    # inputs themselves would be rounded to fp16, and a stage half an ulp from the truth could
    # then read a whole ulp off (CI's dV 1.95e-3 against a 1.48e-3 budget at 1x1x64x64x16).
    seen = []

    def record(name, out, ref64, lowp):
        seen.append((name.split()[-1], ref64.dtype))
        return testing.Verdict(name, 0.0, 0.0, 0.0)

    monkeypatch.setattr(testing, "judge", record)
    caps = Capabilities((torch.float16,), 16, 16, None, causal=True, backward=True)
    eager = SimpleNamespace(
        name="eager",
        capabilities=caps,
        attention=lambda q, k, v, is_causal, scale: reference_attention(
            q, k, v, is_causal=is_causal, scale=scale, dtype=q.dtype
        ),
    )
    testing.backward_verdicts(eager, Problem(1, 1, 8, 8, 16, True, torch.float16), "cpu")
    assert seen == [(n, torch.float64) for n in ("out", "dq", "dk", "dv")]
