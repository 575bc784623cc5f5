"""``python -m common new vNN_name --from vMM_parent``: start a stage from its parent in one step.

Copies the parent's code (not its README, notes or tests), renames the stage inside it, declares
the new stage's parent, and writes a README skeleton with the sections every stage has. No other
file is touched: the registry, the suite and the report pick the folder up as it is.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from common.registry import VARIANTS_DIR

_NAME = re.compile(r"^v(\d{2})_[a-z0-9_]+$")
_SKIP = re.compile(r"^(README\.md|NOTES\.md|test_.*\.py|__pycache__)$")

README = """# {name} — (the one idea, in a few words)

**The idea over {parent}.** (What this stage changes, and nothing else.)

**Why it should help.** (Bytes moved through device memory and FLOPs, before and after, for one
named shape; which of the two limits the parent, by how much this should move, and why.)

**Supported.** (Copied from {parent}'s declaration in `__init__.py`; keep the two in step.)
**Not supported.** (Say what is refused and the error it raises.)

## Measured

(GPU, dtype, shape, TFLOP/s and the ratio to cuDNN and to {parent}, all from one run of
`python -m bench.attention`; commit the raw JSON under `bench/results/`.)
"""


def _assign(source: str, name: str, value: str) -> str:
    """Replace the top-level assignment ``name = ...`` (one line or a parenthesised block)."""
    # A block is "NAME = (" ... a line holding only ")", as ruff formats long strings.
    pattern = re.compile(rf"^{name} = (\(\n.*?^\)|[^\n]*)\n", re.MULTILINE | re.DOTALL)
    if not pattern.search(source):
        raise ValueError(f"the parent's __init__.py has no top-level {name} = ...")
    return pattern.sub(lambda _: f"{name} = {value}\n", source, count=1)


def new_stage(name: str, parent: str, variants_dir: Path = VARIANTS_DIR) -> Path:
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"stage name {name!r} must look like vNN_short_name (e.g. v05_tma)")
    taken = {p.name[:3]: p.name for p in variants_dir.iterdir() if _NAME.match(p.name)}
    if name[:3] in taken:
        raise ValueError(f"number {name[:3]} is taken by {taken[name[:3]]}")
    source = variants_dir / parent
    if not (source / "__init__.py").is_file():
        known = ", ".join(sorted(taken.values()))
        raise ValueError(f"no parent stage {parent!r} in {variants_dir} (known: {known})")
    target = variants_dir / name
    target.mkdir()
    for path in sorted(source.iterdir()):
        if _SKIP.match(path.name):
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name)
        elif path.suffix == ".py":
            (target / path.name).write_text(path.read_text().replace(parent, name))
        else:
            shutil.copy2(path, target / path.name)
    init = (target / "__init__.py").read_text()
    init = _assign(init, "TITLE", f'"{name}: starts as a copy of {parent}"')
    init = _assign(init, "IDEA", f'"(the one idea {name} adds over {parent})"')
    init = _assign(init, "PARENT", f'"{parent}"')
    if "TAKEAWAY = " in init:
        init = _assign(init, "TAKEAWAY", '"(what a reader should remember from this stage)"')
    (target / "__init__.py").write_text(init)
    (target / "README.md").write_text(README.format(name=name, parent=parent))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common new", description=__doc__)
    parser.add_argument("name", help="the new stage's folder name, vNN_short_name")
    parser.add_argument("--from", dest="parent", required=True, help="the parent stage's folder")
    args = parser.parse_args(argv)
    try:
        target = new_stage(args.name, args.parent)
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"created {target}: edit kernel.py, declare the idea in __init__.py, then run\n"
        f"  python3 -m nox -s \"test(variant='{args.name}')\""
    )
    return 0
