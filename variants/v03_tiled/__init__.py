import torch

from common import cost
from common.capabilities import Capabilities

TITLE = "tiled: blocks of queries, K/V streamed in tiles, online softmax"
IDEA = "stream K/V tiles through tl.dot with a running max and sum: O(N) memory, tensor cores"
PARENT = "v02_vectorized"
TAKEAWAY = (
    "Share each K/V tile across a block of queries and keep a running max and sum: memory "
    "becomes O(N), the matmuls move to tensor cores, and any length fits."
)
CAPABILITIES = Capabilities(
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    min_head_dim=16,  # tl.dot needs K >= 16
    max_head_dim=256,
    max_seq_len=None,
    causal=True,
    backward=False,
    fp32_matmul="ieee",  # fp32 dots in full fp32 (common/triton_helpers.py says why)
)

# Bytes through device memory: K and V once per 64-query block.
BYTES_MOVED = cost.kv_read_per_block(64)

from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "TAKEAWAY", "CAPABILITIES"]
