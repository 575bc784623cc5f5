"""v09's backward as a persistent kernel: one program per SM walks its list of key blocks.

Everything inside a key block is v09's (its consumers' step, imported: S^T and dP^T, dV and dK
in registers, dS shared through shared memory, dQ staged and reduce-added by the copy engine).
What changes is around the blocks, as in this stage's forward:
- The grid is one program per SM (at most); program p walks the key blocks the host dealt it
  (``schedule.key_schedule``: head by head, key block 0 first, the longest under the causal
  mask, each block to the least-loaded program), reading each one's (key block, batch, head)
  from a table.
- The Q/dO ring runs on across blocks: a ring position counts every query step the program has
  taken, so the loader fetches the next block's first Q and dO while the consumers are on the
  current block's last steps. The dS buffers and the dQ staging run on the same count.
- K and V have one buffer: the consumers hand it back (``kv_free``) as soon as their last step's
  MMAs have read it, and write dK and dV from registers while the next block's K and V load.
So where a v09 program's start (barrier set-up, the first K, V, Q and dO loads) and end (the
last reduce-add's wait, dK and dV) ran with its SM's tensor cores idle, here only the K/V load's
latency is left between blocks. Every operand is a host-built descriptor over [B, H, N, d] (v08's
``head_descriptor``): boxes clip at their own head's N and d, so no program builds descriptors.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma

from variants.v08_gluon.gluon_fwd import _box, _head
from variants.v09_gluon_bwd.gluon_bwd import CONSUMERS, ROWS, _step

BLOCK_N = gl.constexpr(CONSUMERS * ROWS)  # keys per block: 64 per consumer


@gluon.jit
def _item(BLOCKS, t, N_Q, IS_CAUSAL: gl.constexpr, SPLIT: gl.constexpr, BLOCK_M: gl.constexpr):
    """Key block t of the table: its first key, batch, head, first query block, its steps and,
    with SPLIT, how many of them cross the causal diagonal (taken last)."""
    start_n = gl.load(BLOCKS + 3 * t) * BLOCK_N
    z = gl.load(BLOCKS + 3 * t + 1)
    h = gl.load(BLOCKS + 3 * t + 2)
    m_first = start_n * 0
    if IS_CAUSAL:  # query blocks wholly before the first key see none of these keys
        m_first = start_n // BLOCK_M
    n_steps = gl.maximum(gl.cdiv(N_Q, BLOCK_M) - m_first, 0)
    n_diag = n_steps * 0
    if SPLIT:
        n_diag = gl.minimum(gl.cdiv(start_n + BLOCK_N, BLOCK_M) - m_first, n_steps)
    return start_n, z, h, m_first, n_steps, n_diag


@gluon.jit
def _loader(desc_q, desc_k, desc_v, desc_do, desc_lse, desc_delta, q_smem, k_smem, v_smem,
            do_smem, lse_smem, delta_smem, kv_bar, kv_free, q_ready, do_ready, free, BLOCKS,
            first, last, H, N_Q, N_PAD, IS_CAUSAL: gl.constexpr, SPLIT: gl.constexpr,
            BLOCK_M: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    g = 0  # ring position of the next query step
    for t in range(first, last):
        start_n, z, h, m_first, n_steps, n_diag = _item(BLOCKS, t, N_Q, IS_CAUSAL, SPLIT, BLOCK_M)
        # K and V once both consumers are done with the previous block's (a fresh barrier
        # passes parity 1: the first block does not wait).
        mbarrier.wait(kv_free, ((t - first) & 1) ^ 1)
        mbarrier.expect(kv_bar, desc_k.block_type.nbytes + desc_v.block_type.nbytes)
        kz, kh = _head(desc_k, z, h)
        tma.async_copy_global_to_shared(desc_k, [kz, kh, start_n, 0], kv_bar, _box(k_smem))
        vz, vh = _head(desc_v, z, h)
        tma.async_copy_global_to_shared(desc_v, [vz, vh, start_n, 0], kv_bar, _box(v_smem))
        qz, qh = _head(desc_q, z, h)
        oz, oh = _head(desc_do, z, h)
        row_lse = (z * H + h) * N_PAD + m_first * BLOCK_M
        for i in range(n_steps):
            r = g + i
            stage = r % STAGES
            m0 = i * BLOCK_M
            if SPLIT:  # the consumers' order: the n_diag diagonal query blocks last
                m0 = ((i + n_diag) % n_steps) * BLOCK_M
            mbarrier.wait(free.index(stage), ((r // STAGES) & 1) ^ 1)
            q_tile = q_smem.index(stage)
            mbarrier.expect(
                q_ready.index(stage), desc_q.block_type.nbytes + desc_lse.block_type.nbytes
            )
            tma.async_copy_global_to_shared(
                desc_q, [qz, qh, m_first * BLOCK_M + m0, 0], q_ready.index(stage), _box(q_tile)
            )
            tma.async_copy_global_to_shared(
                desc_lse, [row_lse + m0], q_ready.index(stage), lse_smem.index(stage)
            )
            do_tile = do_smem.index(stage)
            mbarrier.expect(
                do_ready.index(stage), desc_do.block_type.nbytes + desc_delta.block_type.nbytes
            )
            tma.async_copy_global_to_shared(
                desc_do, [oz, oh, m_first * BLOCK_M + m0, 0], do_ready.index(stage), _box(do_tile)
            )
            tma.async_copy_global_to_shared(
                desc_delta, [row_lse + m0], do_ready.index(stage), delta_smem.index(stage)
            )
        g += n_steps


@gluon.jit
def _consumer(q_smem, k_smem, v_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, kv_bar,
              kv_free, q_ready, do_ready, free, ds_ready, desc_dq, DK, DV, stride_dkz,
              stride_dkh, stride_dkn, stride_dvz, stride_dvh, stride_dvn, BLOCKS, first, last, H,
              N_Q, N_KV, N_PAD, HEAD_DIM, sm_scale, qk_scale, WHICH: gl.constexpr,
              IS_CAUSAL: gl.constexpr, SPLIT: gl.constexpr, DQ_ROWS: gl.constexpr,
              DQ_UNDER_DK: gl.constexpr, DQ_PERM: gl.constexpr, BLOCK_M: gl.constexpr,
              STAGES: gl.constexpr):  # fmt: skip
    BLOCK_D: gl.constexpr = k_smem.shape[1]
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_M, 16]
    )
    kv_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_D, 16]
    )
    # dQ's [BLOCK_M, BLOCK_D] tile split between the consumers by rows or columns (v09).
    DQ_M: gl.constexpr = ROWS if DQ_ROWS else BLOCK_M
    DQ_COLS: gl.constexpr = BLOCK_D if DQ_ROWS else BLOCK_D // CONSUMERS
    dq_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, DQ_COLS, 16]
    )
    dtype: gl.constexpr = q_smem.dtype
    k_w = k_smem.slice(WHICH * ROWS, ROWS)
    v_w = v_smem.slice(WHICH * ROWS, ROWS)
    if DQ_ROWS:  # dQ's B operand: all of K
        k_cols = k_smem
    else:  # this consumer's half of K's columns
        k_cols = k_smem.slice(WHICH * DQ_COLS, DQ_COLS, dim=1)
    s_zero = gl.zeros([ROWS, BLOCK_M], gl.float32, s_layout)
    dq_zero = gl.zeros([DQ_M, DQ_COLS], gl.float32, dq_layout)
    out_cols = gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, kv_layout))

    g = 0  # ring position of the block's first query step
    for t in range(first, last):
        start_n, z, h, m_first, n_steps, n_diag = _item(BLOCKS, t, N_Q, IS_CAUSAL, SPLIT, BLOCK_M)
        key0 = start_n + WHICH * ROWS
        keys = key0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, s_layout))
        diag_end = start_n + BLOCK_N
        dq_row = (z * H + h) * N_PAD
        dk = gl.zeros([ROWS, BLOCK_D], gl.float32, kv_layout)
        dv = gl.zeros([ROWS, BLOCK_D], gl.float32, kv_layout)
        mbarrier.wait(kv_bar, (t - first) & 1)
        if SPLIT:  # v09's order: the mask-free steps, then the diagonal's in a loop of their own
            n_full = n_steps - n_diag
            for i in range(n_full):
                dk, dv = _step(g + i, (m_first + n_diag + i) * BLOCK_M, diag_end, dk, dv, q_smem,
                               k_w, v_w, k_cols, do_smem, lse_smem, delta_smem, ds_smem, dq_smem,
                               q_ready, do_ready, free, ds_ready, desc_dq, s_zero, dq_zero, keys,
                               dq_row, sm_scale, qk_scale, WHICH, False, False, DQ_ROWS,
                               DQ_UNDER_DK, DQ_PERM, BLOCK_M, STAGES)  # fmt: skip
            for i in range(n_full, n_steps):
                dk, dv = _step(g + i, (m_first + i - n_full) * BLOCK_M, diag_end, dk, dv, q_smem,
                               k_w, v_w, k_cols, do_smem, lse_smem, delta_smem, ds_smem, dq_smem,
                               q_ready, do_ready, free, ds_ready, desc_dq, s_zero, dq_zero, keys,
                               dq_row, sm_scale, qk_scale, WHICH, True, False, DQ_ROWS,
                               DQ_UNDER_DK, DQ_PERM, BLOCK_M, STAGES)  # fmt: skip
        else:
            for i in range(n_steps):
                dk, dv = _step(g + i, (m_first + i) * BLOCK_M, diag_end, dk, dv, q_smem, k_w, v_w,
                               k_cols, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, q_ready,
                               do_ready, free, ds_ready, desc_dq, s_zero, dq_zero, keys, dq_row,
                               sm_scale, qk_scale, WHICH, IS_CAUSAL, True, DQ_ROWS, DQ_UNDER_DK,
                               DQ_PERM, BLOCK_M, STAGES)  # fmt: skip
        # Every MMA that read K and V has been waited for in its step: the loader may refill them
        # while dK and dV go out.
        mbarrier.arrive(kv_free)
        g += n_steps

        # This consumer's 64 rows of dK and dV (dK already carries sm_scale).
        out_rows = key0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, kv_layout))
        keep = gl.expand_dims(out_rows < N_KV, 1) & gl.expand_dims(out_cols < HEAD_DIM, 0)
        row_off = gl.expand_dims(out_rows.to(gl.int64), 1)
        col_off = gl.expand_dims(out_cols, 0)
        z64 = z.to(gl.int64)
        h64 = h.to(gl.int64)
        dk_ptr = DK + z64 * stride_dkz + h64 * stride_dkh + row_off * stride_dkn + col_off
        gl.store(dk_ptr, dk.to(dtype), mask=keep)
        dv_ptr = DV + z64 * stride_dvz + h64 * stride_dvh + row_off * stride_dvn + col_off
        gl.store(dv_ptr, dv.to(dtype), mask=keep)
    tma.store_wait(0)  # dq_smem must outlive the last reduce's read


@gluon.jit
def attn_bwd(desc_q, desc_k, desc_v, desc_do, desc_dq, DK, DV, desc_lse, desc_delta, BLOCKS,
             STARTS, stride_dkz, stride_dkh, stride_dkn, stride_dvz, stride_dvh, stride_dvn, H,
             N_Q, N_KV, N_PAD, sm_scale, qk_scale, IS_CAUSAL: gl.constexpr,
             HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, STAGES: gl.constexpr,
             CONSUMER_REGS: gl.constexpr, DIAG_LAST: gl.constexpr, DQ_ROWS: gl.constexpr,
             DQ_UNDER_DK: gl.constexpr, DQ_PERM: gl.constexpr):  # fmt: skip
    pid = gl.program_id(0)
    first = gl.load(STARTS + pid)
    last = gl.load(STARTS + pid + 1)
    BLOCK_D: gl.constexpr = desc_q.block_type.shape[3]
    dtype: gl.constexpr = desc_q.dtype
    SPLIT: gl.constexpr = IS_CAUSAL and DIAG_LAST

    q_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_D], dtype)
    kv_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_D], dtype)
    ds_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_M], dtype)
    q_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, BLOCK_D], q_layout)
    do_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, BLOCK_D], q_layout)
    k_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, BLOCK_D], kv_layout)
    v_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, BLOCK_D], kv_layout)
    ds_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_N, BLOCK_M], ds_layout)
    # One fp32 dQ tile per consumer, staged for the reduce-add (v09).
    if DQ_ROWS:
        dq_smem = gl.allocate_shared_memory(gl.float32, [CONSUMERS, ROWS, BLOCK_D], desc_dq.layout)
    else:
        dq_smem = gl.allocate_shared_memory(
            gl.float32, [CONSUMERS, BLOCK_M, BLOCK_D // CONSUMERS], desc_dq.layout
        )
    vec_layout: gl.constexpr = desc_lse.layout
    lse_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_M], vec_layout)
    delta_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_M], vec_layout)
    kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    kv_free = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    q_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    do_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    free = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    ds_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar, count=1)
    mbarrier.init(kv_free, count=CONSUMERS)
    for i in gl.static_range(STAGES):
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(do_ready.index(i), count=1)
        mbarrier.init(free.index(i), count=CONSUMERS)
    for i in gl.static_range(2):
        mbarrier.init(ds_ready.index(i), count=CONSUMERS)

    # As in v09: the consumers are the default partition and one worker, the loader's warp is
    # padded to a warpgroup; Gluon takes the argument tuples as literals only.
    gl.warp_specialize(
        [
            (_consumer, (q_smem, k_smem, v_smem, do_smem, lse_smem, delta_smem, ds_smem,
                         dq_smem.index(0), kv_bar, kv_free, q_ready, do_ready, free, ds_ready,
                         desc_dq, DK, DV, stride_dkz, stride_dkh, stride_dkn, stride_dvz,
                         stride_dvh, stride_dvn, BLOCKS, first, last, H, N_Q, N_KV, N_PAD,
                         HEAD_DIM, sm_scale, qk_scale, 0, IS_CAUSAL, SPLIT, DQ_ROWS, DQ_UNDER_DK,
                         DQ_PERM, BLOCK_M, STAGES)),
            (_consumer, (q_smem, k_smem, v_smem, do_smem, lse_smem, delta_smem, ds_smem,
                         dq_smem.index(1), kv_bar, kv_free, q_ready, do_ready, free, ds_ready,
                         desc_dq, DK, DV, stride_dkz, stride_dkh, stride_dkn, stride_dvz,
                         stride_dvh, stride_dvn, BLOCKS, first, last, H, N_Q, N_KV, N_PAD,
                         HEAD_DIM, sm_scale, qk_scale, 1, IS_CAUSAL, SPLIT, DQ_ROWS, DQ_UNDER_DK,
                         DQ_PERM, BLOCK_M, STAGES)),
            (_loader, (desc_q, desc_k, desc_v, desc_do, desc_lse, desc_delta, q_smem, k_smem,
                       v_smem, do_smem, lse_smem, delta_smem, kv_bar, kv_free, q_ready,
                       do_ready, free, BLOCKS, first, last, H, N_Q, N_PAD, IS_CAUSAL, SPLIT,
                       BLOCK_M, STAGES)),
        ],
        [4, 1],
        [CONSUMER_REGS, 24],
    )  # fmt: skip
