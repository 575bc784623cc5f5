import torch

from common import cost
from common.capabilities import Capabilities

from . import configs

TITLE = "Gluon: warp roles, barriers and MMA order written by hand (forward)"
IDEA = (
    "the forward written in Gluon: a loader warp, two consumer warpgroups (three at d <= 64) "
    "with their own register budgets, and in each consumer the next tile's QK^T and this tile's "
    "P@V issued together so the softmax runs while the tensor cores work"
)
PARENT = "v07_fused_bwd"
TAKEAWAY = (
    "the same roles as v06, written by hand: registers moved from the loader to the consumers, "
    "each softmax run under its own warpgroup's MMAs and a third consumer at d <= 64 take the "
    "forward to 0.99-1.04x cuDNN at d=128 and 0.99-1.06x at d=64 on an H200 (v06: "
    "0.83-0.95x); the backward is still v04's"
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


def BYTES_MOVED(p) -> float:  # the registry's name for the cost model
    """Bytes through device memory: K and V once per program of 64 query rows per consumer (192
    rows at d <= 64, else 128: configs.py)."""
    from .kernel import _block_d  # the module imports kernel last (it reads CAPABILITIES)

    block_d = _block_d(p.head_dim)
    rows = 128
    if block_d in configs.HEAD_DIMS:
        rows = 64 * configs.tiles(block_d, p.n_q, p.causal)["CONSUMERS"]
    return cost.kv_read_per_block(rows)(p)


from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "TAKEAWAY", "CAPABILITIES"]
