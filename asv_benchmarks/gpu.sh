#!/usr/bin/env bash
# The asv recipe for the offline GPU machine (system Python with torch/triton, no network).
#
#   here:   ../shared/tools/device-wheels.sh .whl "asv==0.6.6" "nox==2026.10.20"   # once
#           git bundle create .bundle/repo.bundle --all    # if the copy there lacks history
#   there:  bash asv_benchmarks/gpu.sh setup               # tools from .whl/, a git checkout
#           bash asv_benchmarks/gpu.sh python3 -m nox -s bench -- <range>   # or any command
#
# `setup` installs nox and asv from the wheelhouse into .tools/ and, when .bundle/repo.bundle is
# there (the device copy's .git may lack history), clones it into $ASV_REPO (default
# /tmp/asv-repo); later commands run there, where asv builds each commit from git history and
# writes results under asv_benchmarks/results/ (copy them back to commit them).
set -euo pipefail
here=$(pwd)
repo=${ASV_REPO:-/tmp/asv-repo}
# Where the system torch lives, found before PYTHONPATH changes below.
torch_site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
export PYTHONPATH="$here/.tools" PATH="$here/.tools/bin:$PATH" PYTHONUNBUFFERED=1
if [ "${1:-}" = setup ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$here/.tools" .whl/*.whl
  if [ -f .bundle/repo.bundle ]; then  # the device copy's .git may lack the history
    rm -rf "$repo" && git clone -q .bundle/repo.bundle "$repo"
    git -C "$repo" checkout -q main && cp -r .whl "$repo/"
  fi
  exit 0
fi
[ -f .bundle/repo.bundle ] && cd "$repo"
git config --global --add safe.directory "$(pwd)" 2>/dev/null || true
# asv's environments: the system torch/triton, and pip never asks an index (noxfile does the same).
# Where the "system" Python is itself a venv (/opt/torch/.venv on the lent H200s), a virtualenv
# with system site-packages sees only the base interpreter's; asv.conf.json's install_command
# writes ATTN_TORCH_SITE into a .pth file of each environment. (ASV_PYTHONPATH does not work:
# asv 0.6.6's benchmark launcher strips those paths again.)
export VIRTUALENV_SYSTEM_SITE_PACKAGES=true PIP_NO_INDEX=1 PIP_FIND_LINKS="$(pwd)/.whl"
export ATTN_TORCH_SITE=${ATTN_TORCH_SITE:-$torch_site}
echo "asv environments see the system torch in $ATTN_TORCH_SITE" >&2
"$@"
