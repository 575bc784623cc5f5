"""Every stage x every problem it claims: outputs (and gradients, where declared) against the
float64 reference, within the budget set by PyTorch's own same-dtype error."""

import pytest

from common.testing import backward_verdicts, forward_verdict
from tests.stages import cases, stage_or_fail


@pytest.mark.parametrize("stage_name, problem", cases())
def test_forward_matches_reference(stage_name, problem, device):
    stage = stage_or_fail(stage_name)
    verdict = forward_verdict(stage, problem, device)
    assert verdict.ok, str(verdict)


@pytest.mark.parametrize("stage_name, problem", cases(need_backward=True))
def test_backward_matches_reference(stage_name, problem, device):
    stage = stage_or_fail(stage_name)
    bad = [str(v) for v in backward_verdicts(stage, problem, device) if not v.ok]
    assert not bad, "\n".join(bad)
