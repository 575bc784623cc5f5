import torch

from common import cost
from common.capabilities import Capabilities

TITLE = "basic: one program per query, keys and values one at a time"
IDEA = "write softmax(QK^T)V as a loop: one program per query row, one key per iteration"
PARENT = None
TAKEAWAY = (
    "Correct is the first step, not the last: every program re-reads all of K and V and "
    "rewrites its whole score row per key, so time grows as N^3. Count the bytes before "
    "tuning anything."
)
CAPABILITIES = Capabilities(
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    min_head_dim=1,
    max_head_dim=256,
    # The whole row of scores lives in one register vector of next_pow2(N) floats, and every key
    # step rewrites that vector with tl.where, so time grows as N^3: 4096 is where it stops being
    # a lesson and starts being a wait.
    max_seq_len=4096,
    causal=True,
    backward=False,
    interpreter_max_seq_len=64,
)

# Bytes through device memory (every query's program reads all of K and V).
BYTES_MOVED = cost.kv_read_per_query

from .kernel import attention  # noqa: E402  (the kernel reads CAPABILITIES above)

__all__ = ["attention", "TITLE", "IDEA", "PARENT", "TAKEAWAY", "CAPABILITIES"]
