"""Collection-time helpers: the stages and problems the suite is parametrized over."""

import pytest
import torch

from common import registry
from common.testing import conformance_problems
from common.validation import interpreting

STAGES = {s.name: s for s in registry.discover()}
PROBLEMS = conformance_problems(torch.cuda.is_available())


def stage_or_fail(name):
    stage = STAGES[name]
    if not stage.available:
        pytest.fail(f"stage {name} is unavailable: {stage.error}\n{stage.traceback}")
    return stage


def cases(need_backward=False):
    """(stage_name, problem) pairs for every problem each stage claims to support."""
    out = []
    for name, stage in STAGES.items():
        if not stage.available:
            out.append(pytest.param(name, None, id=f"{name}-unavailable"))
            continue
        if need_backward and not stage.capabilities.backward:
            continue
        out += [
            pytest.param(name, p, id=f"{name}-{p}")
            for p in PROBLEMS
            if p.fits(stage.capabilities, interpreting())
        ]
    return out
