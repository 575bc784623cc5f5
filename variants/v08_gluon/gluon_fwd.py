"""The Gluon forward: warp roles, barriers and the order of the MMAs written by hand (sm90).

One program owns 64 x CONSUMERS query rows (128, or 192 at d <= 64: configs.py) of one (batch,
head) and runs two roles (the one-warp loader is padded to a warpgroup, the unit `setmaxnreg`
budgets registers in):
- a loader warp that only issues TMA loads: the program's Q tiles once, then K and V tiles into
  a ring of STAGES buffers, each waiting until every consumer has released its slot (on an
  mbarrier here; v10 at d=128 on hardware named barriers, FREE_BAR below);
- two or three consumer warpgroups (the default partition and the workers), 64 query rows each,
  that share every K/V buffer.
Each consumer overlaps its own softmax with its tensor cores (FA3's intra-warpgroup overlap):
the QK^T of tile j and the P@V of tile j-1 are issued back to back as asynchronous wgmma; the
consumer waits for the first only, computes tile j's softmax while P@V still runs, then waits for
P@V and rescales the accumulator (v10, at d=128 and d=64 without the mask: only in warps where
some row's max moved, LAZY in softmax.py). The consumers are not ordered against each other: their
softmaxes interleave with each other's MMAs as the warp schedulers find them, and a third
consumer gives the schedulers a third warp to pick from.

Triton's automatic split (v06) gives every one of its 12 warps the same 168 registers, the
producer's included; here the loader's warpgroup gets 24, so two consumers can hold two score
tiles each (QK^T of tile j beside P of tile j-1) in 232-256 registers, or three in 160-168.

Every operand is a host-built descriptor over [B, H, N, d] (kernel.py): its boxes clip at their
own head's N and d, so ragged lengths and padded head dims need no per-program descriptors.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

from .softmax import (
    ROWS,
    _rescale,
    _rescale_rows,
    _row_sums_init,
    _softmax,
    _softmax_maxless,
    _to_parts,
)


@gluon.jit
def _head(desc, z, h):
    """Batch and head coordinates in a [B, H, N, d] descriptor. A batch or head dim that is
    broadcast (stride 0, from ``expand``) is described with size 1 (kernel.py), so every program
    reads its one copy. (A min, not a modulo: integer divisions, ~20 instructions each, before
    the first load cost up to 6% at 1024 tokens; NOTES.md run 11.)"""
    return gl.minimum(z, desc.shape[0] - 1), gl.minimum(h, desc.shape[1] - 1)


@gluon.jit
def _box(tile):
    """A [rows, d] shared-memory tile as the [1, 1, rows, d] box of a [B, H, N, d] descriptor."""
    return tile.reshape([1, 1, tile.shape[0], tile.shape[1]])


# Inline PTX for a hardware named barrier: $1 its id, $2 the threads taking part ($0 is a dummy
# result, as `inline_asm_elementwise` returns a tensor).
BAR_SYNC = gl.constexpr("bar.sync $1, $2;\n\tmov.u32 $0, 0;")
BAR_ARRIVE = gl.constexpr("bar.arrive $1, $2;\n\tmov.u32 $0, 0;")


@gluon.jit
def _named_barrier(ASM: gl.constexpr, bar_id, count: gl.constexpr):
    """``ASM`` (BAR_SYNC or BAR_ARRIVE) on named barrier ``bar_id`` with ``count`` threads,
    issued by every thread of the calling partition (one element per thread)."""
    WARPS: gl.constexpr = gl.num_warps()
    layout: gl.constexpr = gl.BlockedLayout([1], [32], [WARPS], [0])
    ids = gl.full([32 * WARPS], bar_id, gl.int32, layout)
    counts = gl.full([32 * WARPS], count, gl.int32, layout)
    gl.inline_asm_elementwise(ASM, "=r,r,r", [ids, counts], dtype=gl.int32, is_pure=False, pack=1)


# How the consumers hand a ring slot back to the loader: FREE_BAR = 0, an mbarrier per slot
# (k_free / v_free); else hardware named barriers FREE_BAR + slot (K) and FREE_BAR + STAGES +
# slot (V), FREE_COUNT threads each (every consumer's 128 and the loader's 32; v10 at d=128). A
# consumer's `bar.arrive` does not wait; the loader's `bar.sync` waits for all of them. Gluon's
# mbarrier arrive is one thread's, so the compiler puts a `bar.sync` of the warpgroup before each
# (two per key tile); the named arrive is every thread's and needs none. A named barrier has no
# phases, so no id may see a second round of arrivals before the loader's sync for the first:
# a consumer arrives for ring position r only after waiting for r's tile, which the loader loads
# only after its sync for r - STAGES, the same id's previous round. The first STAGES positions
# have no previous round to wait for; the last STAGES rounds are left unsynced at the exit.
@gluon.jit
def _free_wait(free, r, IS_V: gl.constexpr, STAGES: gl.constexpr, FREE_BAR: gl.constexpr,
               FREE_COUNT: gl.constexpr):  # fmt: skip
    """The loader's wait until ring position r's K (IS_V = 0) or V (1) slot is free."""
    if FREE_BAR == 0:
        # A fresh mbarrier counts as having completed the phase of parity 1, so the first round
        # through the ring does not wait.
        mbarrier.wait(free.index(r % STAGES), ((r // STAGES) & 1) ^ 1)
    elif r >= STAGES:
        _named_barrier(BAR_SYNC, FREE_BAR + IS_V * STAGES + r % STAGES, FREE_COUNT)


@gluon.jit
def _free_arrive(free, r, IS_V: gl.constexpr, STAGES: gl.constexpr, FREE_BAR: gl.constexpr,
                 FREE_COUNT: gl.constexpr):  # fmt: skip
    """A consumer's hand-back of ring position r's K (IS_V = 0) or V (1) slot."""
    if FREE_BAR == 0:
        mbarrier.arrive(free.index(r % STAGES))
    else:
        _named_barrier(BAR_ARRIVE, FREE_BAR + IS_V * STAGES + r % STAGES, FREE_COUNT)


@gluon.jit
def _load_q(desc_q, q_smem, q_bar, z, h, start_m, slot0, CONSUMERS: gl.constexpr):
    """A row block's Q tiles, one per consumer, into Q buffers slot0, slot0 + 1, ... (each on
    its own barrier)."""
    qz, qh = _head(desc_q, z, h)
    for w in gl.static_range(CONSUMERS):
        mbarrier.expect(q_bar.index(slot0 + w), desc_q.block_type.nbytes)
        tma.async_copy_global_to_shared(
            desc_q,
            [qz, qh, start_m + w * ROWS, 0],
            q_bar.index(slot0 + w),
            _box(q_smem.index(slot0 + w)),
        )


@gluon.jit
def _load_kv(desc_k, desc_v, k_smem, v_smem, k_ready, v_ready, k_free, v_free, z, h, n_tiles,
             r0, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, FREE_BAR: gl.constexpr = 0,
             FREE_COUNT: gl.constexpr = 0):  # fmt: skip
    """K and V tiles 0..n_tiles-1 of one head into the ring, tile j at ring position r0 + j (a
    persistent program's ring runs on across its tiles; a one-tile program starts at 0)."""
    kz, kh = _head(desc_k, z, h)
    vz, vh = _head(desc_v, z, h)
    for j in range(n_tiles):
        stage = (r0 + j) % STAGES
        _free_wait(k_free, r0 + j, 0, STAGES, FREE_BAR, FREE_COUNT)
        mbarrier.expect(k_ready.index(stage), desc_k.block_type.nbytes)
        tma.async_copy_global_to_shared(
            desc_k, [kz, kh, j * BLOCK_N, 0], k_ready.index(stage), _box(k_smem.index(stage))
        )
        _free_wait(v_free, r0 + j, 1, STAGES, FREE_BAR, FREE_COUNT)
        mbarrier.expect(v_ready.index(stage), desc_v.block_type.nbytes)
        tma.async_copy_global_to_shared(
            desc_v, [vz, vh, j * BLOCK_N, 0], v_ready.index(stage), _box(v_smem.index(stage))
        )


@gluon.jit
def _loader(desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free,
            v_free, z, h, start_m, n_tiles, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
            CONSUMERS: gl.constexpr):  # fmt: skip
    _load_q(desc_q, q_smem, q_bar, z, h, start_m, 0, CONSUMERS)
    _load_kv(desc_k, desc_v, k_smem, v_smem, k_ready, v_ready, k_free, v_free, z, h, n_tiles, 0,
             BLOCK_N, STAGES)  # fmt: skip


@gluon.jit
def _first_scores(q, k_smem, k_ready, s_zero, r, STAGES: gl.constexpr):
    """Issue QK^T of a row block's first key tile, at ring position r (asynchronous; nothing to
    overlap it with yet)."""
    mbarrier.wait(k_ready.index(r % STAGES), (r // STAGES) & 1)
    s_tile = k_smem.index(r % STAGES).permute((1, 0))
    return warpgroup_mma(q, s_tile, s_zero, use_acc=False, is_async=True)


@gluon.jit
def _issue_pair(q, p_op, acc, s_zero, k_smem, v_smem, k_ready, v_ready, r, STAGES: gl.constexpr):
    """Issue QK^T of the tile at ring position r and P@V of the one before it, back to back (both
    asynchronous)."""
    stage = r % STAGES
    prev = (r - 1) % STAGES
    mbarrier.wait(k_ready.index(stage), (r // STAGES) & 1)
    s = warpgroup_mma(q, k_smem.index(stage).permute((1, 0)), s_zero, use_acc=False, is_async=True)
    mbarrier.wait(v_ready.index(prev), ((r - 1) // STAGES) & 1)
    acc = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
    return s, acc


@gluon.jit
def _retire_pair(s, acc, p_op, m_i, l_i, k_free, v_free, j, r, row0, N_KV, qk_scale,
                 IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
                 s_layout: gl.constexpr, p_layout: gl.constexpr, FREE_BAR: gl.constexpr = 0,
                 FREE_COUNT: gl.constexpr = 0, LAZY: gl.constexpr = 0,
                 THREAD_SUMS: gl.constexpr = 0, NO_MAX: gl.constexpr = 0):  # fmt: skip
    """Finish the pair _issue_pair started (key tile j, at ring position r): tile j's softmax while
    P@V of tile j-1 still runs, then the accumulator brought to the new row max, and tile j's P
    as the next A operand. NO_MAX: m_i and l_i are [ROWS, 4] per-thread parts (softmax.py)."""
    # Oldest first: QK^T of tile j is done, P@V of tile j-1 may still run.
    s = warpgroup_mma_wait(1, deps=(s,))
    _free_arrive(k_free, r, 0, STAGES, FREE_BAR, FREE_COUNT)
    if NO_MAX:
        p, m_i, l_i, alpha4, flag4 = _softmax_maxless(
            s, m_i, l_i, j * BLOCK_N, row0, N_KV, qk_scale, IS_CAUSAL, BLOCK_N, s_layout, LAZY
        )
    else:
        p, m_i, l_i, alpha = _softmax(
            s, m_i, l_i, j * BLOCK_N, row0, N_KV, qk_scale, IS_CAUSAL, BLOCK_N, s_layout, LAZY,
            THREAD_SUMS,
        )  # fmt: skip
    acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))
    _free_arrive(v_free, r - 1, 1, STAGES, FREE_BAR, FREE_COUNT)
    if NO_MAX:
        acc = _rescale_rows(acc, alpha4, flag4)
    else:
        acc = _rescale(acc, alpha, LAZY)
    p_op = gl.convert_layout(p.to(p_op.dtype), p_layout)
    return p_op, acc, m_i, l_i


@gluon.jit
def _last_pv(p_op, acc, v_smem, v_ready, r, STAGES: gl.constexpr):
    """Issue P@V of the last tile, at ring position r (asynchronous)."""
    mbarrier.wait(v_ready.index(r % STAGES), (r // STAGES) & 1)
    return warpgroup_mma(p_op, v_smem.index(r % STAGES), acc, is_async=True)


@gluon.jit
def _normalise(acc, m_i, l_i, LSE, z, h, H, row0, N_Q):
    """The output rows divided by their sums; writes their base-2 LSE."""
    o_rows: gl.constexpr = gl.SliceLayout(1, acc.type.layout)
    l_o = gl.convert_layout(l_i, o_rows)
    rows = row0 + gl.arange(0, ROWS, layout=o_rows)
    lse = gl.convert_layout(m_i, o_rows) + gl.log2(l_o)
    gl.store(LSE + (z * H + h).to(gl.int64) * N_Q + rows, lse, mask=rows < N_Q)
    return acc / gl.expand_dims(l_o, 1)


@gluon.jit
def _epilogue(acc, m_i, l_i, q, desc_o, LSE, z, h, H, row0, N_Q):
    """Normalise, write the base-2 LSE, and send O out through this consumer's Q buffer (its
    last QK^T has completed); the descriptor drops rows past N_Q and columns past d."""
    acc = _normalise(acc, m_i, l_i, LSE, z, h, H, row0, N_Q)
    q.store(acc.to(q.dtype))
    fence_async_shared()
    tma.async_copy_shared_to_global(desc_o, [z, h, row0, 0], _box(q))  # O is dense
    tma.store_wait(0)


@gluon.jit
def _attend(q, k_smem, v_smem, k_ready, v_ready, k_free, v_free, row0, N_KV, qk_scale, n_tiles,
            r0, q_free, IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr,
            STAGES: gl.constexpr, FREE_BAR: gl.constexpr = 0,
            FREE_COUNT: gl.constexpr = 0, LAZY: gl.constexpr = 0,
            THREAD_SUMS: gl.constexpr = 0, Q_REGS: gl.constexpr = 0,
            NO_MAX: gl.constexpr = 0):  # fmt: skip
    """One consumer's 64 rows against K/V tiles 0..n_tiles-1 (tile j at ring position r0 + j):
    the unnormalised output, row max and row sum. When ``q_free`` is a barrier, it is arrived on
    as soon as the last QK^T has read Q (a persistent loader then refills the buffer while the
    last P@V and the epilogue run). Q_REGS (v10 at d=128): Q is loaded into registers once, as
    every QK^T's A operand (wgmma from registers: only K is read from shared memory), and its
    buffer handed back at once."""
    BLOCK_D: gl.constexpr = q.shape[1]
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_D, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    s_zero = gl.zeros([ROWS, BLOCK_N], gl.float32, s_layout)
    acc = gl.zeros([ROWS, BLOCK_D], gl.float32, o_layout)
    m_i = gl.full([ROWS], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
    l_i = _row_sums_init(s_layout, BLOCK_N, THREAD_SUMS)
    if Q_REGS:
        q = q.load(gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2))
        if q_free is not None:
            mbarrier.arrive(q_free)

    s = warpgroup_mma_wait(0, deps=(_first_scores(q, k_smem, k_ready, s_zero, r0, STAGES),))
    _free_arrive(k_free, r0, 0, STAGES, FREE_BAR, FREE_COUNT)
    p, m_i, l_i, alpha = _softmax(
        s, m_i, l_i, 0, row0, N_KV, qk_scale, IS_CAUSAL, BLOCK_N, s_layout, LAZY, THREAD_SUMS
    )
    if NO_MAX:  # the row max in the per-thread parts' layout, as the guard keeps it
        m_i = _to_parts(m_i, s_layout, BLOCK_N)
    p_op = gl.convert_layout(p.to(q.dtype), p_layout)
    for j in range(1, n_tiles):
        s_j, pv = _issue_pair(
            q, p_op, acc, s_zero, k_smem, v_smem, k_ready, v_ready, r0 + j, STAGES
        )
        p_op, acc, m_i, l_i = _retire_pair(
            s_j, pv, p_op, m_i, l_i, k_free, v_free, j, r0 + j, row0, N_KV, qk_scale, IS_CAUSAL,
            BLOCK_N, STAGES, s_layout, p_layout, FREE_BAR, FREE_COUNT, LAZY, THREAD_SUMS, NO_MAX,
        )  # fmt: skip
    if q_free is not None and not Q_REGS:
        mbarrier.arrive(q_free)
    r_last = r0 + n_tiles - 1
    pv = _last_pv(p_op, acc, v_smem, v_ready, r_last, STAGES)
    acc = warpgroup_mma_wait(0, deps=(pv,))
    _free_arrive(v_free, r_last, 1, STAGES, FREE_BAR, FREE_COUNT)
    if THREAD_SUMS:  # the lanes' parts added once
        l_i = gl.sum(l_i, axis=1)
    if NO_MAX:
        m_i = gl.max(m_i, axis=1)
    return acc, m_i, l_i


@gluon.jit
def _release(k_ready, v_ready, k_free, v_free, first, last, STAGES: gl.constexpr,
             FREE_BAR: gl.constexpr = 0, FREE_COUNT: gl.constexpr = 0):  # fmt: skip
    """Hand back the ring positions first..last-1 unread: the ring's slots are shared, so a
    consumer that needs fewer tiles than its program still arrives on every one, in order."""
    for r in range(first, last):
        phase = (r // STAGES) & 1
        mbarrier.wait(k_ready.index(r % STAGES), phase)
        _free_arrive(k_free, r, 0, STAGES, FREE_BAR, FREE_COUNT)
        mbarrier.wait(v_ready.index(r % STAGES), phase)
        _free_arrive(v_free, r, 1, STAGES, FREE_BAR, FREE_COUNT)


@gluon.jit
def _tiles_needed(row0, n_tiles, N_Q, N_KV, IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr,
                  CONSUMERS: gl.constexpr):  # fmt: skip
    """The key tiles a consumer's 64 rows from row0 need: all n_tiles of its program's, but with
    three consumers (192-row programs against 128-key tiles) a causal program's first rows may
    end a tile early, and rows wholly past N_Q (192 does not divide 4096) need none. With two
    consumers the trim never trims; compiled in anyway, it cost ptxas 32 PRMT per loop
    iteration."""
    n_mine = n_tiles
    if IS_CAUSAL and CONSUMERS * ROWS > BLOCK_N:
        n_mine = gl.cdiv(gl.minimum(row0 + ROWS, N_KV), BLOCK_N)
    if row0 >= N_Q:
        n_mine = 0
    return n_mine


@gluon.jit
def _consumer(q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free, desc_o, LSE,
              z, h, H, start_m, N_Q, N_KV, qk_scale, n_tiles, WHICH: gl.constexpr,
              IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
              CONSUMERS: gl.constexpr):  # fmt: skip
    row0 = start_m + WHICH * ROWS
    n_mine = _tiles_needed(row0, n_tiles, N_Q, N_KV, IS_CAUSAL, BLOCK_N, CONSUMERS)
    q = q_smem.index(WHICH)
    mbarrier.wait(q_bar.index(WHICH), 0)  # also when idle: no copy may land after the exit
    if n_mine > 0:
        acc, m_i, l_i = _attend(
            q, k_smem, v_smem, k_ready, v_ready, k_free, v_free, row0, N_KV, qk_scale, n_mine,
            0, None, IS_CAUSAL, BLOCK_N, STAGES,
        )  # fmt: skip
        _epilogue(acc, m_i, l_i, q, desc_o, LSE, z, h, H, row0, N_Q)
    _release(k_ready, v_ready, k_free, v_free, n_mine, n_tiles, STAGES)


@gluon.jit
def _program(N_KV, IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, CONSUMERS: gl.constexpr):
    """This program's first query row, its batch and head (grid axes 2 and 1: no division) and
    the K/V tiles it walks. Causal programs run longest rows first. When the rows per program do
    not divide N_Q, the last program runs past it with idle consumers; starting that program at
    row 0 instead, overlapping its neighbour, measured 2-8% slower (NOTES.md run 12)."""
    pid_m = gl.program_id(0)
    if IS_CAUSAL:
        pid_m = gl.num_programs(0) - 1 - pid_m
    start_m = pid_m * (CONSUMERS * ROWS)
    hi = N_KV
    if IS_CAUSAL:
        hi = gl.minimum(start_m + CONSUMERS * ROWS, N_KV)
    return start_m, gl.program_id(2), gl.program_id(1), gl.cdiv(hi, BLOCK_N)


@gluon.jit
def _buffers(dtype: gl.constexpr, BLOCK_D: gl.constexpr, BLOCK_N: gl.constexpr,
             STAGES: gl.constexpr, CONSUMERS: gl.constexpr,
             Q_BUFFERS: gl.constexpr):  # fmt: skip
    """Shared memory: Q_BUFFERS Q tiles (one per consumer here; v10 double-buffers them), the K/V
    ring and their barriers (initialised)."""
    q_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([ROWS, BLOCK_D], dtype)
    kv_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_D], dtype)
    q_smem = gl.allocate_shared_memory(dtype, [Q_BUFFERS, ROWS, BLOCK_D], q_layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, BLOCK_D], kv_layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, BLOCK_D], kv_layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [Q_BUFFERS, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_free = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_free = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for w in gl.static_range(Q_BUFFERS):
        mbarrier.init(q_bar.index(w), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_free.index(i), count=CONSUMERS)
        mbarrier.init(v_free.index(i), count=CONSUMERS)
    return q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free


@gluon.jit
def attn_fwd(desc_q, desc_k, desc_v, desc_o, LSE, H, N_Q, N_KV, qk_scale,
             IS_CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
             CONSUMERS: gl.constexpr, CONSUMER_REGS: gl.constexpr):  # fmt: skip
    start_m, z, h, n_tiles = _program(N_KV, IS_CAUSAL, BLOCK_N, CONSUMERS)
    BLOCK_D: gl.constexpr = desc_q.block_type.shape[3]
    q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free = _buffers(
        desc_q.dtype, BLOCK_D, BLOCK_N, STAGES, CONSUMERS, CONSUMERS
    )
    # The consumers are the default partition and CONSUMERS - 1 workers; the loader's warp is
    # padded to a warpgroup, the unit setmaxnreg budgets (the default partition gets what the
    # others leave of the 64K registers). Gluon takes the argument tuples as literals only.
    if CONSUMERS == 3:
        gl.warp_specialize(
            [
                (_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free,
                             desc_o, LSE, z, h, H, start_m, N_Q, N_KV, qk_scale, n_tiles, 0,
                             IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS)),
                (_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free,
                             desc_o, LSE, z, h, H, start_m, N_Q, N_KV, qk_scale, n_tiles, 1,
                             IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS)),
                (_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free,
                             desc_o, LSE, z, h, H, start_m, N_Q, N_KV, qk_scale, n_tiles, 2,
                             IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS)),
                (_loader, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_bar, k_ready,
                           v_ready, k_free, v_free, z, h, start_m, n_tiles, BLOCK_N, STAGES,
                           CONSUMERS)),
            ],
            [4, 4, 1],
            [CONSUMER_REGS, CONSUMER_REGS, 24],
        )  # fmt: skip
    else:
        gl.warp_specialize(
            [
                (_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free,
                             desc_o, LSE, z, h, H, start_m, N_Q, N_KV, qk_scale, n_tiles, 0,
                             IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS)),
                (_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_free, v_free,
                             desc_o, LSE, z, h, H, start_m, N_Q, N_KV, qk_scale, n_tiles, 1,
                             IS_CAUSAL, BLOCK_N, STAGES, CONSUMERS)),
                (_loader, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_bar, k_ready,
                           v_ready, k_free, v_free, z, h, start_m, n_tiles, BLOCK_N, STAGES,
                           CONSUMERS)),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )  # fmt: skip
