"""One folder per stage of the series: ``vNN_short_name``. See common/registry.py.

On a machine without a GPU the kernels run under Triton's interpreter. The switch must be set
before any stage's ``@triton.jit`` runs, i.e. before the first stage module is imported, which is
why it lives here (every stage is imported through this package)."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
