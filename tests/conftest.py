"""Test configuration: the ``--variant`` filter and shared fixtures.

Without a GPU the kernels run under Triton's interpreter; ``variants/__init__.py`` sets that up
before any stage is imported, for the tests as for every other entry point."""

import sys

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption(
        "--variant",
        action="append",
        default=[],
        help="run only the tests of this stage (folder name or vNN); repeatable",
    )


@pytest.fixture(scope="session")
def device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def pytest_collection_modifyitems(config, items):
    wanted = config.getoption("--variant")
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        name = params.get("stage_name") or params.get("stage")
        name = name if isinstance(name, str) else None
        folder = item.path.parent.name
        hit = any(
            (name and (name == w or name.startswith(w + "_")))
            or folder == w
            or folder.startswith(w + "_")
            for w in wanted
        )
        (keep if hit else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


@pytest.fixture
def extra_stages(tmp_path, monkeypatch):
    """A scratch variants folder, seen by the registry instead of the real one and importable
    as ``variants.<name>`` in front of it."""
    import variants
    from common import registry

    monkeypatch.setattr(registry, "VARIANTS_DIR", tmp_path)
    monkeypatch.setattr(variants, "__path__", [str(tmp_path), *variants.__path__])
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("variants.v9")]:
        del sys.modules[name]
