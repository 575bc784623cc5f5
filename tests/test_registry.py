"""The registry: discovery from folders only, ordering, lookup, and unavailable stages."""

import pytest

from common import registry


def test_discover_lists_the_stages_in_order():
    names = [s.name for s in registry.discover()]
    assert names[:2] == ["v01_basic", "v02_vectorized"]
    numbers = [s.number for s in registry.discover()]
    assert numbers == sorted(numbers)


def test_every_stage_is_available_and_complete():
    for stage in registry.discover():
        assert stage.available, f"{stage.name}: {stage.error}"
        assert stage.title and stage.idea and callable(stage.attention)
        assert isinstance(stage.capabilities.backward, bool)
        assert (stage.path / "README.md").is_file(), f"{stage.name} has no README.md"
        if stage.parent is not None:
            assert registry.get(stage.parent).number < stage.number


@pytest.mark.parametrize("key", ["v02_vectorized", "v02"])
def test_get_by_name_or_number(key):
    assert registry.get(key).name == "v02_vectorized"


def test_get_unknown_names_the_known_stages():
    with pytest.raises(KeyError, match="v01_basic"):
        registry.get("v77_nothing")


STAGE_INIT = """
import torch
from common.capabilities import Capabilities
TITLE = "demo"
IDEA = "demo"
PARENT = "v01_basic"
CAPABILITIES = Capabilities(dtypes=(torch.float32,), min_head_dim=1, max_head_dim=64,
                            max_seq_len=None, causal=False, backward=False)
from variants.v02_vectorized import attention
"""


def test_new_folder_is_picked_up(extra_stages):
    (extra_stages / "v98_demo").mkdir()
    (extra_stages / "v98_demo" / "__init__.py").write_text(STAGE_INIT)
    (extra_stages / "not_a_stage").mkdir()
    stages = registry.discover()
    assert [s.name for s in stages] == ["v98_demo"]
    assert stages[0].available and stages[0].parent == "v01_basic"


def test_broken_stage_is_reported_not_dropped(extra_stages):
    (extra_stages / "v97_broken").mkdir()
    (extra_stages / "v97_broken" / "__init__.py").write_text("raise ImportError('no GPU lib')\n")
    (extra_stages / "v96_incomplete").mkdir()
    (extra_stages / "v96_incomplete" / "__init__.py").write_text("TITLE = 'x'\n")
    stages = {s.name: s for s in registry.discover()}
    assert not stages["v97_broken"].available
    assert "no GPU lib" in stages["v97_broken"].error
    assert "does not define" in stages["v96_incomplete"].error
