"""The scaffold: one command makes a stage from its parent, and that stage passes the suite."""

import shutil
from pathlib import Path

import pytest
import torch

from common import registry
from common.scaffold import new_stage
from common.testing import Problem, forward_verdict

REAL_VARIANTS = Path(__file__).resolve().parent.parent / "variants"


def test_scaffolded_stage_is_discovered_and_correct(extra_stages, device):
    shutil.copytree(
        REAL_VARIANTS / "v03_tiled",
        extra_stages / "v03_tiled",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    target = new_stage("v98_scaffolded", "v03_tiled", variants_dir=extra_stages)
    assert sorted(p.name for p in target.iterdir()) == [
        "README.md",
        "__init__.py",
        "__main__.py",
        "kernel.py",
    ]
    assert "## Measured" in (target / "README.md").read_text()
    stage = registry.get("v98")
    assert stage.available, stage.error
    assert stage.parent == "v03_tiled" and "v98_scaffolded" in stage.title
    for problem in (Problem(1, 2, 33, 20, 64, causal=True), Problem(2, 1, 17, 17, 96)):
        verdict = forward_verdict(stage, problem, device)
        assert verdict.ok, str(verdict)
    q = torch.randn(1, 1, 4, 16, dtype=torch.float64, device=device)
    with pytest.raises(TypeError, match="^v98_scaffolded: dtype"):
        stage.attention(q, q, q)


@pytest.mark.parametrize(
    "name, parent, message",
    [
        ("v5_short", "v03_tiled", "must look like vNN_short_name"),
        ("v03_again", "v03_tiled", "number v03 is taken"),
        ("v97_orphan", "v42_missing", "no parent stage"),
    ],
)
def test_scaffold_refuses(extra_stages, name, parent, message):
    (extra_stages / "v03_tiled").mkdir()
    (extra_stages / "v03_tiled" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match=message):
        new_stage(name, parent, variants_dir=extra_stages)
