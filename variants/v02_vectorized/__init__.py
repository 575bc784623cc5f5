import torch

from common import cost
from common.capabilities import Capabilities

TITLE = "vectorized: a query's keys and values as one 2-D block"
IDEA = "replace the per-key loops with one [N, d] block load and broadcast arithmetic"
PARENT = "v01_basic"
TAKEAWAY = (
    "Loading a block instead of looping removes the per-key work inside a program, but every "
    "query still reads all of K and V: the waste between programs is untouched."
)
CAPABILITIES = Capabilities(
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    min_head_dim=1,
    max_head_dim=128,
    # The program holds all keys of the row as one [next_pow2(N), next_pow2(d)] tile: 4096 x 128
    # fp32 is 2 MiB per program, already far past the register file (it spills to local memory),
    # and Triton refuses tiles above 2**20 elements.
    max_seq_len=4096,
    causal=True,
    backward=False,
)

# Bytes through device memory (still once per query: the block load is inside one program).
BYTES_MOVED = cost.kv_read_per_query

from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "TAKEAWAY", "CAPABILITIES"]
