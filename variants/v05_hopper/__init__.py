import torch

from common import cost
from common.capabilities import Capabilities

TITLE = "Hopper forward: TMA tile loads, the next QK^T issued under this tile's softmax"
IDEA = (
    "tiles moved by the TMA copy engine through tensor descriptors, and the next tile's QK^T "
    "issued before this tile's softmax so tensor and CUDA cores overlap"
)
PARENT = "v04_flash2"
TAKEAWAY = (
    "On Hopper the matmuls are asynchronous: give the copy engine the loads and give the tensor "
    "cores the next QK^T before the softmax, and the CUDA-core work hides behind the MMAs."
)
CAPABILITIES = Capabilities(
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    min_head_dim=16,
    max_head_dim=256,
    max_seq_len=None,
    causal=True,
    backward=True,
    fp32_matmul="ieee",
)

# Bytes through device memory: K and V once per 128-query block, as in v04.
BYTES_MOVED = cost.kv_read_per_block(128)

from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "TAKEAWAY", "CAPABILITIES"]
