"""Discovery of stages: every folder ``variants/vNN_name`` is a stage, ordered by NN.

A stage's ``__init__.py`` declares ``TITLE``, ``IDEA``, ``PARENT`` and ``CAPABILITIES`` and
exports ``attention``. Adding a folder is the only step needed; there is no list to edit. A stage
that fails to import is returned as unavailable with the reason, never dropped.
"""

from __future__ import annotations

import importlib
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing it needs torch; the scaffold reads VARIANTS_DIR without torch
    from common.capabilities import Capabilities

VARIANTS_DIR = Path(__file__).resolve().parent.parent / "variants"
_FOLDER = re.compile(r"^v(\d{2})_[a-z0-9_]+$")


@dataclass
class Stage:
    name: str
    number: int
    path: Path
    title: str = ""
    idea: str = ""
    takeaway: str = ""
    parent: str | None = None
    attention: Callable | None = None
    capabilities: Capabilities | None = None
    module: object | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None


def stage_folders() -> list[Path]:
    """The stage folders on disk, ordered by number (no import)."""
    found = [p for p in VARIANTS_DIR.iterdir() if p.is_dir() and _FOLDER.match(p.name)]
    return sorted(found, key=lambda p: (int(_FOLDER.match(p.name).group(1)), p.name))


def _load(path: Path) -> Stage:
    from common.capabilities import Capabilities

    stage = Stage(name=path.name, number=int(path.name[1:3]), path=path)
    try:
        module = importlib.import_module(f"variants.{path.name}")
        missing = [
            a
            for a in ("TITLE", "IDEA", "PARENT", "CAPABILITIES", "attention")
            if not hasattr(module, a)
        ]
        if missing:
            raise AttributeError(f"variants/{path.name}/__init__.py does not define {missing}")
        if not isinstance(module.CAPABILITIES, Capabilities):
            raise TypeError("CAPABILITIES must be a common.capabilities.Capabilities")
    except Exception as exc:  # reported, not hidden: the stage shows up as unavailable
        stage.error = f"{type(exc).__name__}: {exc}"
        stage.traceback = traceback.format_exc()
        return stage
    stage.module = module
    stage.title = module.TITLE
    stage.idea = module.IDEA
    stage.takeaway = getattr(module, "TAKEAWAY", "")
    stage.parent = module.PARENT
    stage.capabilities = module.CAPABILITIES
    stage.attention = module.attention
    return stage


def discover() -> list[Stage]:
    """Every stage under ``variants/``, available or not, ordered by number."""
    return [_load(p) for p in stage_folders()]


def get(name: str) -> Stage:
    """One stage by full folder name (``v02_vectorized``) or by number prefix (``v02``)."""
    for path in stage_folders():
        if path.name == name or path.name.split("_", 1)[0] == name:
            return _load(path)
    known = ", ".join(p.name for p in stage_folders())
    raise KeyError(f"no stage named {name!r}; known stages: {known}")
