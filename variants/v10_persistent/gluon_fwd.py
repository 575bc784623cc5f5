"""v08's forward as a persistent kernel: one program per SM walks its list of row blocks.

Everything inside a row block is v08's (its loader's loads, its consumers' overlapped QK^T, P@V
and softmax, imported from ``variants.v08_gluon.gluon_fwd``). What changes is around the blocks:
- The grid is one program per SM (at most); program p walks the row blocks the host dealt it
  (``schedule.py``: head by head, each head's longest first, each block to the least-loaded
  program), reading each block's (row block, batch, head) from a table.
- The K/V ring runs on across blocks: ring position r counts every key tile the program has
  loaded, so the loader fetches the next block's first K/V tiles while the consumers are still on
  the current block's last ones.
- Q is double-buffered: the loader fills the next block's Q buffers as soon as it has issued the
  current block's last K/V tile, so a consumer finds Q (and the first K tile) waiting when it
  leaves its epilogue. A consumer hands a Q buffer back (``q_free``) as soon as its last QK^T of
  the block has read it. (With one buffer, refilled after that last QK^T, the load's latency sat
  between blocks: d=128 at 4k tokens ran 2-3% under v08.)
- O leaves through a buffer of its own (v08 reused Q's), and its TMA store is waited for only
  before that buffer is written again, one block later.
So where a v08 program's prologue (barrier set-up, the Q load, the first K tile's latency) and
epilogue ran with its SM's tensor cores idle, here they run under the neighbouring blocks' work.
Changes inside a block are switches of v08's code: lazy rescaling (kernel.LAZY), the row sums
kept per thread, the lanes' parts added once per block (THREAD_SUMS; NOTES run 14), Q in
registers at d=128 (Q_REGS) and the max-free softmax (NO_MAX, v08's softmax.py; NOTES run 22).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma

from variants.v08_gluon.gluon_fwd import (
    ROWS,
    _attend,
    _box,
    _buffers,
    _load_kv,
    _load_q,
    _normalise,
    _release,
    _tiles_needed,
)


@gluon.jit
def _block(BLOCKS, i, N_KV, IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr,
           CONSUMERS: gl.constexpr):  # fmt: skip
    """Row block i of the table: its first query row, batch, head and key tile count."""
    start_m = gl.load(BLOCKS + 3 * i) * (CONSUMERS * ROWS)
    z = gl.load(BLOCKS + 3 * i + 1)
    h = gl.load(BLOCKS + 3 * i + 2)
    hi = N_KV
    if IS_CAUSAL:
        hi = gl.minimum(start_m + CONSUMERS * ROWS, N_KV)
    return start_m, z, h, gl.cdiv(hi, BLOCK_N)


@gluon.jit
def _q_slot(k, CONSUMERS: gl.constexpr):
    """The first Q buffer of a program's k-th row block (Q is double-buffered: one set of
    CONSUMERS buffers for even blocks, one for odd) and the parity of that set's barriers."""
    return (k & 1) * CONSUMERS, (k >> 1) & 1


@gluon.jit
def _loader(desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready,
            k_free, v_free, BLOCKS, first, last, N_KV, IS_CAUSAL: gl.constexpr,
            BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CONSUMERS: gl.constexpr,
            FREE_BAR: gl.constexpr):  # fmt: skip
    FREE_COUNT: gl.constexpr = 128 * CONSUMERS + 32  # at a named ring barrier (FREE_BAR)
    r = 0  # ring position of the next key tile
    for i in range(first, last):
        start_m, z, h, n_tiles = _block(BLOCKS, i, N_KV, IS_CAUSAL, BLOCK_N, CONSUMERS)
        slot0, phase = _q_slot(i - first, CONSUMERS)
        # The buffers' last reader was the block before last, whose final QK^T has long been
        # retired (a fresh barrier passes parity 1, so the first two blocks do not wait).
        for w in gl.static_range(CONSUMERS):
            mbarrier.wait(q_free.index(slot0 + w), phase ^ 1)
        _load_q(desc_q, q_smem, q_bar, z, h, start_m, slot0, CONSUMERS)
        _load_kv(desc_k, desc_v, k_smem, v_smem, k_ready, v_ready, k_free, v_free, z, h, n_tiles,
                 r, BLOCK_N, STAGES, FREE_BAR, FREE_COUNT)  # fmt: skip
        r += n_tiles


@gluon.jit
def _consumer(q_smem, o_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready, k_free, v_free,
              desc_o, LSE, BLOCKS, first, last, H, N_Q, N_KV, qk_scale, WHICH: gl.constexpr,
              IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
              CONSUMERS: gl.constexpr, FREE_BAR: gl.constexpr,
              LAZY: gl.constexpr, Q_REGS: gl.constexpr = 0,
              NO_MAX: gl.constexpr = 0):  # fmt: skip
    FREE_COUNT: gl.constexpr = 128 * CONSUMERS + 32  # at a named ring barrier (FREE_BAR)
    o = o_smem.index(WHICH)
    r = 0  # ring position of the block's first key tile
    for i in range(first, last):
        start_m, z, h, n_tiles = _block(BLOCKS, i, N_KV, IS_CAUSAL, BLOCK_N, CONSUMERS)
        row0 = start_m + WHICH * ROWS
        n_mine = _tiles_needed(row0, n_tiles, N_Q, N_KV, IS_CAUSAL, BLOCK_N, CONSUMERS)
        slot0, phase = _q_slot(i - first, CONSUMERS)
        mine = slot0 + WHICH
        mbarrier.wait(q_bar.index(mine), phase)  # also when idle: keeps the parity
        if n_mine > 0:
            acc, m_i, l_i = _attend(
                q_smem.index(mine), k_smem, v_smem, k_ready, v_ready, k_free, v_free, row0, N_KV,
                qk_scale, n_mine, r, q_free.index(mine), IS_CAUSAL, BLOCK_N, STAGES, FREE_BAR,
                FREE_COUNT, LAZY, THREAD_SUMS=1, Q_REGS=Q_REGS, NO_MAX=NO_MAX,
            )  # fmt: skip
            acc = _normalise(acc, m_i, l_i, LSE, z, h, H, row0, N_Q)
            tma.store_wait(0)  # the previous block's O has left the buffer
            o.store(acc.to(o.dtype))
            fence_async_shared()
            tma.async_copy_shared_to_global(desc_o, [z, h, row0, 0], _box(o))  # O is dense
        else:
            mbarrier.arrive(q_free.index(mine))
        _release(k_ready, v_ready, k_free, v_free, r + n_mine, r + n_tiles, STAGES, FREE_BAR,
                 FREE_COUNT)  # fmt: skip
        r += n_tiles
    tma.store_wait(0)  # no store may read shared memory after the exit


@gluon.jit
def attn_fwd(desc_q, desc_k, desc_v, desc_o, LSE, BLOCKS, STARTS, H, N_Q, N_KV, qk_scale,
             IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
             CONSUMERS: gl.constexpr, CONSUMER_REGS: gl.constexpr,
             FREE_BAR: gl.constexpr = 0, LAZY: gl.constexpr = 0,
             Q_REGS: gl.constexpr = 0, NO_MAX: gl.constexpr = 0):  # fmt: skip
    pid = gl.program_id(0)
    first = gl.load(STARTS + pid)
    last = gl.load(STARTS + pid + 1)
    BLOCK_D: gl.constexpr = desc_q.block_type.shape[3]
    dtype: gl.constexpr = desc_q.dtype
    q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free = _buffers(
        dtype, BLOCK_D, BLOCK_N, STAGES, CONSUMERS, 2 * CONSUMERS
    )
    o_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([ROWS, BLOCK_D], dtype)
    o_smem = gl.allocate_shared_memory(dtype, [CONSUMERS, ROWS, BLOCK_D], o_layout)
    q_free = gl.allocate_shared_memory(gl.int64, [2 * CONSUMERS, 1], mbarrier.MBarrierLayout())
    for w in gl.static_range(2 * CONSUMERS):
        mbarrier.init(q_free.index(w), count=1)
    # As in v08: the consumers are the default partition and CONSUMERS - 1 workers, the loader's
    # warp is padded to a warpgroup; Gluon takes the argument tuples as literals only.
    if CONSUMERS == 3:
        gl.warp_specialize(
            [
                (_consumer, (q_smem, o_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready,
                             k_free, v_free, desc_o, LSE, BLOCKS, first, last, H, N_Q, N_KV,
                             qk_scale, 0, IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR,
                             LAZY, Q_REGS, NO_MAX)),
                (_consumer, (q_smem, o_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready,
                             k_free, v_free, desc_o, LSE, BLOCKS, first, last, H, N_Q, N_KV,
                             qk_scale, 1, IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR,
                             LAZY, Q_REGS, NO_MAX)),
                (_consumer, (q_smem, o_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready,
                             k_free, v_free, desc_o, LSE, BLOCKS, first, last, H, N_Q, N_KV,
                             qk_scale, 2, IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR,
                             LAZY, Q_REGS, NO_MAX)),
                (_loader, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_bar, q_free,
                           k_ready, v_ready, k_free, v_free, BLOCKS, first, last, N_KV,
                           IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR)),
            ],
            [4, 4, 1],
            [CONSUMER_REGS, CONSUMER_REGS, 24],
        )  # fmt: skip
    else:
        gl.warp_specialize(
            [
                (_consumer, (q_smem, o_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready,
                             k_free, v_free, desc_o, LSE, BLOCKS, first, last, H, N_Q, N_KV,
                             qk_scale, 0, IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR,
                             LAZY, Q_REGS, NO_MAX)),
                (_consumer, (q_smem, o_smem, k_smem, v_smem, q_bar, q_free, k_ready, v_ready,
                             k_free, v_free, desc_o, LSE, BLOCKS, first, last, H, N_Q, N_KV,
                             qk_scale, 1, IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR,
                             LAZY, Q_REGS, NO_MAX)),
                (_loader, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_bar, q_free,
                           k_ready, v_ready, k_free, v_free, BLOCKS, first, last, N_KV,
                           IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS, FREE_BAR)),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )  # fmt: skip
