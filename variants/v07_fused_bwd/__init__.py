import torch

from common import cost
from common.capabilities import Capabilities

TITLE = "Fused backward: every score computed once, dQ summed by TMA reduce-adds"
IDEA = (
    "one backward kernel per key block does the five tile matmuls once (v04's two kernels did "
    "seven), keeping dK and dV in registers and adding each step's dQ into an fp32 buffer with "
    "a TMA reduce-add"
)
PARENT = "v06_warpspec"
TAKEAWAY = (
    "five matmuls instead of v04's seven, but in Triton 3.6 dQ's product, staging and TMA "
    "reduce-add cost as much as the other four: 0.62-0.65x cuDNN at d=128 on an H200, below "
    "v04's 0.68-0.71x; without dQ the same loop runs at 1.06-1.31x, so hiding dQ is the next step"
)
CAPABILITIES = Capabilities(
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    min_head_dim=16,
    max_head_dim=256,
    max_seq_len=None,
    causal=True,
    backward=True,
    fp32_matmul="ieee",
    deterministic_dq=False,  # dQ is summed by atomic adds (kernel.py)
)

# Bytes through device memory (forward): v06's.
BYTES_MOVED = cost.kv_read_per_block(128)

from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "TAKEAWAY", "CAPABILITIES"]
