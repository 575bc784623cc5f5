"""Which row blocks each persistent program walks, and in what order (host side, no GPU).

A row block is one program's worth of queries in v08's kernel: 64 x CONSUMERS rows of one
(batch, head). Its cost is the number of 128-key tiles it walks (all of them without a mask;
under the causal mask, only those up to its last row's diagonal), scaled down when the head ends
inside it and some of its consumers have no rows (``BUSY_SPEED``), plus a fixed ``OVERHEAD`` for
loading Q and writing O. The blocks are listed head by head, each head's longest first (the order
v08's grid launches them in: the programs running at one time share a few heads' K and V in L2),
and dealt out greedily, each to the program with the least work so far (longest processing time
first, LPT). That is what the hardware's block scheduler does with v08's grid, done once on the
host with estimated instead of measured times. Without a mask every block costs the same and the
deal is round-robin; a head whose length the block does not divide (4096 rows in 192-row
blocks: 21 and a block of 64 rows) ends in a cheaper block, and the deal is LPT again. Under the
mask, head by head leaves the last head's longest blocks for the end, so the heads can be dealt
in groups (``group``): each row block of every head in the group before the next, longest first
across the group (kernel.py picks the group size).

The result is two int32 tensors: ``blocks`` [n_blocks, 3] (row block, batch, head) grouped by
program, and ``starts`` [programs + 1], program p's blocks being ``blocks[starts[p]:starts[p+1]]``.
``held`` keeps the pair alive once a CUDA graph has captured a launch that reads it: the graph
reads the same memory at every replay, long after the cache may have dropped the pair.
"""

import functools
import heapq

import torch

# A row block's fixed cost in key tiles: its Q load, first QK^T (with no softmax to hide behind)
# and epilogue. 1 is an estimate; it only tips the deal between blocks of nearly equal length.
OVERHEAD = 1

# A block's time per key tile against a full one's, by (consumers with rows, consumers): fewer
# warpgroups share the tensor cores and the MUFU, so each runs faster. On an H200 at d=64 (one
# block per program, 128 blocks of 4 x 32 heads, 32k keys): 64 of 192 rows ran in 0.58 of a full
# block's time, 128 in 0.78-0.82. Unmeasured pairs count as full. Costed as full, the 128 blocks
# of 64 rows at 4,32,4096,64 all went to 6 of the 132 programs (22 blocks per head, and 22
# divides 132) and 40 others took a 22nd full block; costed so, +0.5-2.1% at 4k and 8k-head
# d=64 shapes in two processes, none slower (NOTES.md, run 16).
BUSY_SPEED = {(1, 3): 0.58, (2, 3): 0.82}


def block_costs(n_blocks: int, rows: int, n_kv: int, causal: bool, block_n: int,
                n_q: int | None = None) -> list[float]:  # fmt: skip
    """The cost of each row block of one head, row block 0 first: the key tiles it walks, scaled
    by BUSY_SPEED where its rows run past ``n_q`` (by default, none do)."""
    all_tiles = -(-n_kv // block_n)
    if causal:
        costs = [-(-min((m + 1) * rows, n_kv) // block_n) for m in range(n_blocks)]
    else:
        costs = [all_tiles] * n_blocks
    consumers = rows // 64  # 64 query rows per consumer warpgroup
    if n_q is not None and n_q < n_blocks * rows:
        busy = -(-(n_q - (n_blocks - 1) * rows) // 64)
        costs[-1] *= BUSY_SPEED.get((busy, consumers), 1.0)
    return costs


def deal(costs: list[float], programs: int) -> list[list[int]]:
    """LPT: walk ``costs`` in order and give each item to the program with the least work so far
    (the lower index on ties). Returns each program's item indices, in the order dealt."""
    if programs < 1:
        raise ValueError(f"programs must be positive, got {programs}")
    owned: list[list[int]] = [[] for _ in range(programs)]
    if len(set(costs)) <= 1:  # equal costs: round-robin, without the heap
        for p in range(programs):
            owned[p] = list(range(p, len(costs), programs))
        return owned
    load = [(0, p) for p in range(programs)]  # already a heap
    for i, c in enumerate(costs):
        work, p = heapq.heappop(load)
        owned[p].append(i)
        heapq.heappush(load, (work + c + OVERHEAD, p))
    return owned


def head_major(n_heads: int, n_blocks: int, group: int) -> list[tuple[int, int]]:
    """(head, block) pairs, heads in groups of ``group``: a group's blocks in order, each block
    of every head of the group before the next block."""
    if group < 1:
        raise ValueError(f"group must be positive, got {group}")
    return [
        (h, m)
        for g0 in range(0, n_heads, group)
        for m in range(n_blocks)
        for h in range(g0, min(g0 + group, n_heads))
    ]


def _capturing(device: torch.device) -> bool:
    """Whether the current CUDA stream is capturing a graph (the CPU build has no such check)."""
    return torch.device(device).type == "cuda" and torch.cuda.is_current_stream_capturing()


@functools.lru_cache(maxsize=64)
def schedule(batch: int, heads: int, n_q: int, n_kv: int, causal: bool, rows: int, block_n: int,
             programs: int, device: torch.device,
             group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(blocks, starts)`` on ``device`` for ``programs`` programs (module docstring); cached
    per shape, so a training loop builds it once."""
    if _capturing(device):  # the upload below would end the capture
        raise RuntimeError(
            "v10: the row-block schedule of a new shape is built on the host and copied to the "
            "GPU, which a CUDA graph cannot capture; run one call of this shape before capturing"
        )
    n_blocks = -(-n_q // rows)
    per_head = block_costs(n_blocks, rows, n_kv, causal, block_n, n_q)
    # Each head's longest block first: the last one under the causal mask, any one without.
    order = list(range(n_blocks - 1, -1, -1)) if causal else list(range(n_blocks))
    items = head_major(batch * heads, n_blocks, group if causal else 1)
    costs = [per_head[order[i]] for _, i in items]
    owned = deal(costs, programs)
    table = torch.empty(len(costs), 3, dtype=torch.int32)
    bh_of = torch.tensor([bh for bh, _ in items], dtype=torch.int64)
    m_of = torch.tensor([order[i] for _, i in items], dtype=torch.int64)
    starts = [0]
    for mine in owned:
        idx = torch.tensor(mine, dtype=torch.int64)
        bh, m = bh_of[idx], m_of[idx]
        table[starts[-1] : starts[-1] + len(mine)] = torch.stack((m, bh // heads, bh % heads), 1)
        starts.append(starts[-1] + len(mine))
    return table.to(device), torch.tensor(starts, dtype=torch.int32, device=device)


# The schedules read by a captured CUDA graph, by id; never dropped (a graph may live forever, and
# a pair is a few KiB to a few hundred).
_HELD: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def held(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``pair``, kept alive for good if the current stream is capturing a CUDA graph."""
    if _capturing(pair[0].device):
        _HELD[id(pair[0])] = pair
    return pair
