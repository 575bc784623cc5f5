import torch

from common.capabilities import Capabilities

TITLE = "FlashAttention-2: deferred normalisation, causal tile split, autotuned, with backward"
IDEA = (
    "FA2's loop order and bookkeeping (exp2, one division at the end, skipped causal tiles) "
    "plus a two-kernel backward from the saved log-sum-exp"
)
PARENT = "v03_tiled"
CAPABILITIES = Capabilities(
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    min_head_dim=16,
    max_head_dim=256,
    max_seq_len=None,
    causal=True,
    backward=True,
    fp32_matmul="ieee",
)

from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "CAPABILITIES"]
