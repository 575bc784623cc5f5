"""Which row blocks each persistent program walks, and in what order (host side, no GPU).

A row block is one program's worth of queries in v08's kernel: 64 x CONSUMERS rows of one
(batch, head). Its cost is the number of 128-key tiles it walks (all of them without a mask;
under the causal mask, only those up to its last row's diagonal) plus a fixed ``OVERHEAD`` for
loading Q and writing O. The blocks are listed head by head, each head's longest first (the order
v08's grid launches them in: the programs running at one time share a few heads' K and V in L2),
and dealt out greedily, each to the program with the least work so far (longest processing time
first, LPT). That is what the hardware's block scheduler does with v08's grid, done once on the
host with estimated instead of measured times. Without a mask every block costs the same and the
deal is round-robin. Under the mask, head by head leaves the last head's longest blocks for the
end, so the heads can be dealt in groups (``group``): each row block of every head in the group
before the next, longest first across the group (kernel.py picks the group size).

The result is two int32 tensors: ``blocks`` [n_blocks, 3] (row block, batch, head) grouped by
program, and ``starts`` [programs + 1], program p's blocks being ``blocks[starts[p]:starts[p+1]]``.
"""

import functools
import heapq

import torch

# A row block's fixed cost in key tiles: its Q load, first QK^T (with no softmax to hide behind)
# and epilogue. 1 is an estimate; it only tips the deal between blocks of nearly equal length.
OVERHEAD = 1


def block_costs(n_blocks: int, rows: int, n_kv: int, causal: bool, block_n: int) -> list[int]:
    """The key tiles each row block of one head walks, row block 0 first."""
    all_tiles = -(-n_kv // block_n)
    if not causal:
        return [all_tiles] * n_blocks
    return [-(-min((m + 1) * rows, n_kv) // block_n) for m in range(n_blocks)]


def deal(costs: list[int], programs: int) -> list[list[int]]:
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


@functools.lru_cache(maxsize=64)
def schedule(batch: int, heads: int, n_q: int, n_kv: int, causal: bool, rows: int, block_n: int,
             programs: int, device: torch.device,
             group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(blocks, starts)`` on ``device`` for ``programs`` programs (module docstring); cached
    per shape, so a training loop builds it once."""
    n_blocks = -(-n_q // rows)
    per_head = block_costs(n_blocks, rows, n_kv, causal, block_n)
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
