"""The Gluon backward: one program per 128 keys, every tile product computed once (sm90).

A program owns BLOCK_N = 128 keys of one (batch, head) and walks the query blocks that see them.
Its warps take three roles (12 warps; the one-warp loader is padded to a warpgroup):
- a loader warp: the program's K and V tiles once, then Q, dO, LSE and Delta per query block into
  a ring of STAGES buffers;
- two consumer warpgroups, 64 keys each (one wgmma M-tile). Per query block each computes, for
  its keys, the transposed scores S^T = K Q^T and dP^T = V dO^T (issued together), then P^T and
  dS^T = P^T (dP^T - Delta), and accumulates dV += P^T dO and dK += dS^T Q in registers, with
  P^T and dS^T fed to the tensor cores straight from registers.
dQ = dS K sums over all 128 keys, so it cannot be split by keys: both consumers write their dS^T
rows into one shared buffer and meet at an mbarrier. With 128-query steps (d <= 64) each then
multiplies 64 of dS's query rows by all of K (DQ_ROWS); with 64-query steps, the whole dS by
half of K's columns (FA3's split). At d=64 the column split makes [128, 32] products, wgmma
N=32, which reload their A tile from shared memory for half the work; the row split's N=64 ran
5-8% faster overall (NOTES.md, run 8). Each consumer then stages its fp32 tile in shared memory
(with DQ_PERM its rows in an order free of bank conflicts: _add_dq) and has the copy engine add
it into the fp32 dQ buffer in L2 (a TMA reduce-add), which runs on while the warps go on to the
next block.

The reduce-add is what makes this stage: with the same loop, vector `red.global.add` from
registers ran at 0.76-0.85x cuDNN at d=128, the TMA reduce-add at 0.99-1.07x (NOTES.md).
"""

from triton._C.libtriton import ir
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language._core import builtin
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

from variants.v08_gluon.gluon_fwd import _box

ROWS = gl.constexpr(64)  # keys per consumer warpgroup: one wgmma M-tile
CONSUMERS = gl.constexpr(2)


@builtin
def _tma_reduce_add(tensor_desc, coord, src, _semantic=None):
    """global[coord] += src (shared memory), by the copy engine: the op Triton 3.6 lowers for
    `tl`'s descriptor `atomic_add`, which Gluon's Hopper `tma` module does not expose yet."""
    coord = _semantic._convert_to_ir_values(coord, require_i64=False)
    _semantic.builder.create_async_tma_reduce(
        ir.DESCRIPTOR_REDUCE_KIND.ADD, tensor_desc.handle, coord, src.handle
    )


@gluon.jit
def _add_dq(dq, desc_dq, dq_smem, row, col, DQ_PERM: gl.constexpr):
    """Add this consumer's [rows, cols] fp32 dQ tile at (row, col) of the buffer."""
    tma.store_wait(0)  # the previous step's reduce has finished reading dq_smem
    if DQ_PERM:
        # Query row 4a + b of each group of 8 staged (and added) at row 2b + a: queries 0-3 at
        # rows 0 2 4 6, 4-7 at 1 3 5 7; the dQ buffer keeps that order; dq_cast.py undoes it.
        # A warp's 64-bit stores go in two halves of four rows x 32 bytes, and the 128-byte
        # swizzle XORs a row's 16-byte chunks with the row index, so in natural order rows 2k
        # and 2k + 1 share banks and each half takes two passes (ncu at 2x16x16384x128: 268M
        # excess wavefronts, 8.5% of the shared-memory traffic). Rows 0 2 4 6: one pass.
        R: gl.constexpr = dq.shape[0]
        N: gl.constexpr = dq.shape[1]
        dq = gl.reshape(gl.permute(gl.reshape(dq, [R // 8, 2, 4, N]), (0, 2, 1, 3)), [R, N])
    dq_smem.store(dq)
    fence_async_shared()
    # One reduce per TMA box (at most 128 bytes wide: 32 fp32 columns): Triton 3.6 lowers a
    # reduce of a wider tile to a single instruction that covers the first box only.
    CHUNK: gl.constexpr = desc_dq.block_type.shape[1]
    for c in gl.static_range(dq_smem.shape[1] // CHUNK):
        _tma_reduce_add(desc_dq, [row, col + c * CHUNK], dq_smem.slice(c * CHUNK, CHUNK, dim=1))


@gluon.jit
def _loader(desc_q, desc_k, desc_v, desc_do, desc_lse, desc_delta, q_smem, k_smem, v_smem,
            do_smem, lse_smem, delta_smem, kv_bar, q_ready, do_ready, free, kv_row, q_row,
            row_lse, n_steps, BLOCK_M: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    mbarrier.expect(kv_bar, desc_k.block_type.nbytes + desc_v.block_type.nbytes)
    tma.async_copy_global_to_shared(desc_k, [kv_row, 0], kv_bar, k_smem)
    tma.async_copy_global_to_shared(desc_v, [kv_row, 0], kv_bar, v_smem)
    for i in range(n_steps):
        stage = i % STAGES
        m0 = i * BLOCK_M
        # A fresh mbarrier counts as having completed the phase of parity 1: the first round
        # through the ring does not wait.
        mbarrier.wait(free.index(stage), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(q_ready.index(stage), desc_q.block_type.nbytes + desc_lse.block_type.nbytes)
        tma.async_copy_global_to_shared(
            desc_q, [q_row + m0, 0], q_ready.index(stage), q_smem.index(stage)
        )
        tma.async_copy_global_to_shared(
            desc_lse, [row_lse + m0], q_ready.index(stage), lse_smem.index(stage)
        )
        mbarrier.expect(
            do_ready.index(stage), desc_do.block_type.nbytes + desc_delta.block_type.nbytes
        )
        tma.async_copy_global_to_shared(
            desc_do, [q_row + m0, 0], do_ready.index(stage), do_smem.index(stage)
        )
        tma.async_copy_global_to_shared(
            desc_delta, [row_lse + m0], do_ready.index(stage), delta_smem.index(stage)
        )


@gluon.jit
def _send_dq(
    dq, desc_dq, dq_smem, row, WHICH: gl.constexpr, DQ_ROWS: gl.constexpr, DQ_PERM: gl.constexpr
):
    """Add this consumer's part of the dQ tile of the query block from ``row``."""
    if DQ_ROWS:  # 64 query rows, every column
        _add_dq(dq, desc_dq, dq_smem, row + WHICH * ROWS, 0, DQ_PERM)
    else:  # every query row, half of the columns
        _add_dq(dq, desc_dq, dq_smem, row, WHICH * dq.shape[1], DQ_PERM)


@gluon.jit
def _step(i, m0, dk, dv, q_smem, k_w, v_w, k_cols, do_smem, lse_smem, delta_smem, ds_smem,
          dq_smem, q_ready, do_ready, free, ds_ready, desc_dq, s_zero, dq_zero, keys, dq_row,
          sm_scale, qk_scale, WHICH: gl.constexpr, MASKED: gl.constexpr, DQ_ROWS: gl.constexpr,
          DQ_UNDER_DK: gl.constexpr, DQ_PERM: gl.constexpr, BLOCK_M: gl.constexpr,
          STAGES: gl.constexpr, DELTA_SCALED: gl.constexpr):  # fmt: skip
    """Step ``i`` of one consumer (ring slot i % STAGES, the queries from row ``m0``): S^T,
    dP^T, P^T and dS^T, then dV and dK, and this consumer's part of dQ. MASKED: the causal mask
    (a step whose queries cross the diagonal)."""
    op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=dk.type.layout,
                                                  k_width=2)  # fmt: skip
    cols_layout: gl.constexpr = gl.SliceLayout(0, s_zero.type.layout)
    dtype: gl.constexpr = q_smem.dtype
    stage = i % STAGES
    phase = (i // STAGES) & 1
    mbarrier.wait(q_ready.index(stage), phase)
    s = warpgroup_mma(
        k_w, q_smem.index(stage).permute((1, 0)), s_zero, use_acc=False, is_async=True
    )
    mbarrier.wait(do_ready.index(stage), phase)
    dp = warpgroup_mma(
        v_w, do_smem.index(stage).permute((1, 0)), s_zero, use_acc=False, is_async=True
    )
    # P^T while dP^T is still on the tensor cores.
    s = warpgroup_mma_wait(1, deps=(s,))
    lse = lse_smem.index(stage).load(cols_layout)
    p = gl.exp2(s * qk_scale - gl.expand_dims(lse, 0))
    if MASKED:
        queries = m0 + gl.arange(0, BLOCK_M, layout=cols_layout)
        p = gl.where(gl.expand_dims(queries, 0) >= gl.expand_dims(keys, 1), p, 0.0)
    delta = delta_smem.index(stage).load(cols_layout)
    dp = warpgroup_mma_wait(0, deps=(dp,))
    # sm_scale folded into dS: dK and dQ come out scaled.
    if DELTA_SCALED:  # Delta arrives times sm_scale: an FFMA and an FMUL per element, not three
        ds = (p * (dp * sm_scale - gl.expand_dims(delta, 0))).to(dtype)
    else:  # (d=128 under the causal mask, where the short form read -2.7 to +0.2%: configs.py)
        ds = (p * (dp - gl.expand_dims(delta, 0)) * sm_scale).to(dtype)
    p_op = gl.convert_layout(p.to(dtype), op_layout)
    dv = warpgroup_mma(p_op, do_smem.index(stage), dv, is_async=True)
    ds_op = gl.convert_layout(ds, op_layout)
    if not DQ_UNDER_DK:
        dk = warpgroup_mma(ds_op, q_smem.index(stage), dk, is_async=True)
    # Both halves of dS^T in shared memory (the store runs under dV's MMA, and dK's). Two
    # buffers: a consumer reaches step i + 2 only after both have passed step i + 1's
    # barrier, which each enters after its dQ product of step i has completed.
    buf = i % 2
    ds_smem.index(buf).slice(WHICH * ROWS, ROWS).store(ds)
    fence_async_shared()
    mbarrier.arrive(ds_ready.index(buf))
    mbarrier.wait(ds_ready.index(buf), (i // 2) & 1)
    if DQ_ROWS:  # this consumer's 64 query rows of dQ, all columns: dS (64 x 128) @ K
        ds_t = ds_smem.index(buf).slice(WHICH * ROWS, ROWS, dim=1).permute((1, 0))
    else:  # every query row, this consumer's half of the columns: dS @ K[:, half]
        ds_t = ds_smem.index(buf).permute((1, 0))
    dq = warpgroup_mma(ds_t, k_cols, dq_zero, use_acc=False, is_async=True)
    if DQ_UNDER_DK:
        # dK's product queued behind dQ's, so the tensor cores have work while both consumers
        # (in step since the dS barrier) stage their dQ tiles: +1-3% at d=128 without the
        # causal mask, 7% slower with it at d=64 and d=128 (NOTES.md, run 10).
        dk = warpgroup_mma(ds_op, q_smem.index(stage), dk, is_async=True)
        dv, dq = warpgroup_mma_wait(1, deps=(dv, dq))
        _send_dq(dq, desc_dq, dq_smem, dq_row + m0, WHICH, DQ_ROWS, DQ_PERM)
        dk = warpgroup_mma_wait(0, deps=(dk,))
        mbarrier.arrive(free.index(stage))
    else:
        dv, dk, dq = warpgroup_mma_wait(0, deps=(dv, dk, dq))
        mbarrier.arrive(free.index(stage))
        _send_dq(dq, desc_dq, dq_smem, dq_row + m0, WHICH, DQ_ROWS, DQ_PERM)
    return dk, dv


@gluon.jit
def _consumer(q_smem, k_smem, v_smem, do_smem, lse_smem, delta_smem, ds_smem, dq_smem, kv_bar,
              q_ready, do_ready, free, ds_ready, desc_dq, DK, DV, stride_dkn, stride_dvn, z, h,
              start_n, m_first, n_steps, dq_row, N_KV, HEAD_DIM, sm_scale, qk_scale,
              WHICH: gl.constexpr, IS_CAUSAL: gl.constexpr,
              DQ_ROWS: gl.constexpr, DQ_UNDER_DK: gl.constexpr, DQ_PERM: gl.constexpr,
              BLOCK_M: gl.constexpr, BLOCK_D: gl.constexpr, STAGES: gl.constexpr,
              DELTA_SCALED: gl.constexpr, TMA_DKV: gl.constexpr,
              DKV_LAYOUT: gl.constexpr):  # fmt: skip
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_M, 16]
    )
    kv_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_D, 16]
    )
    # dQ's [BLOCK_M, BLOCK_D] tile split between the consumers by rows (DQ_ROWS, 128-query
    # steps) or by columns.
    DQ_M: gl.constexpr = ROWS if DQ_ROWS else BLOCK_M
    DQ_COLS: gl.constexpr = BLOCK_D if DQ_ROWS else BLOCK_D // CONSUMERS
    dq_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, DQ_COLS, 16]
    )
    dtype: gl.constexpr = q_smem.dtype

    key0 = start_n + WHICH * ROWS
    k_w = k_smem.slice(WHICH * ROWS, ROWS)
    v_w = v_smem.slice(WHICH * ROWS, ROWS)
    if DQ_ROWS:  # dQ's B operand: all of K
        k_cols = k_smem
    else:  # this consumer's half of K's columns
        k_cols = k_smem.slice(WHICH * DQ_COLS, DQ_COLS, dim=1)
    s_zero = gl.zeros([ROWS, BLOCK_M], gl.float32, s_layout)
    dq_zero = gl.zeros([DQ_M, DQ_COLS], gl.float32, dq_layout)
    dk = gl.zeros([ROWS, BLOCK_D], gl.float32, kv_layout)
    dv = gl.zeros([ROWS, BLOCK_D], gl.float32, kv_layout)
    keys = key0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, s_layout))
    mbarrier.wait(kv_bar, 0)

    # Under the causal mask the program's first BLOCK_N / BLOCK_M steps are the ones whose
    # queries cross the diagonal (its queries start at its first key, a multiple of BLOCK_N):
    # they run with the mask as straight-line code, ahead of one loop without it. With the mask
    # inside the loop ptxas if-converts it, so every step pays: 509 SASS instructions per step
    # at d=128 against 433 here. The split before this one (the diagonal's steps last, in a
    # loop of their own) had 29-38 spill instructions in that loop at d=64 (NOTES.md, run 30).
    # On an H200 the peel read 0 to +2.3% against both at the anchors, -1.9% at d=16 (run 31).
    if IS_CAUSAL:
        PEEL: gl.constexpr = CONSUMERS * ROWS // BLOCK_M
        for j in gl.static_range(PEEL):
            if j < n_steps:
                dk, dv = _step(j, (m_first + j) * BLOCK_M, dk, dv, q_smem, k_w, v_w, k_cols,
                               do_smem, lse_smem, delta_smem, ds_smem, dq_smem, q_ready,
                               do_ready, free, ds_ready, desc_dq, s_zero, dq_zero, keys, dq_row,
                               sm_scale, qk_scale, WHICH, True, DQ_ROWS, DQ_UNDER_DK, DQ_PERM,
                               BLOCK_M, STAGES, DELTA_SCALED)  # fmt: skip
    else:
        PEEL: gl.constexpr = 0
    for i in range(PEEL, n_steps):
        dk, dv = _step(i, (m_first + i) * BLOCK_M, dk, dv, q_smem, k_w, v_w, k_cols, do_smem,
                       lse_smem, delta_smem, ds_smem, dq_smem, q_ready, do_ready, free, ds_ready,
                       desc_dq, s_zero, dq_zero, keys, dq_row, sm_scale, qk_scale, WHICH, False,
                       DQ_ROWS, DQ_UNDER_DK, DQ_PERM, BLOCK_M, STAGES, DELTA_SCALED)  # fmt: skip
    tma.store_wait(0)  # dq_smem must outlive the last reduce's read

    # Epilogue: this consumer's 64 rows of dK and dV (dK already carries sm_scale).
    if TMA_DKV:
        # Through this consumer's dQ staging buffer (as many bytes as a [64, d] 16-bit tile),
        # by the copy engine: the 4-D descriptors clip at the head's N_KV and d.
        buf = dq_smem._reinterpret(dtype, [ROWS, BLOCK_D], DKV_LAYOUT)
        _send_tile(dk.to(dtype), buf, DK, [z, h, key0, 0])
        _send_tile(dv.to(dtype), buf, DV, [z, h, key0, 0])
    else:
        _store_dkv(dk, dv, DK, DV, stride_dkn, stride_dvn, key0, N_KV, HEAD_DIM)


@gluon.jit
def _send_tile(x, buf, desc, coord):
    """``x`` to global memory at ``coord`` of a [B, H, N, d] descriptor, through ``buf``, which
    is free again on return."""
    buf.store(x)
    fence_async_shared()
    tma.async_copy_shared_to_global(desc, coord, _box(buf))
    tma.store_wait(0)


@gluon.jit
def _store_dkv(dk, dv, DK, DV, stride_dkn, stride_dvn, key0, N_KV, HEAD_DIM):
    """dK and dV of the 64 keys from ``key0`` by plain stores, cut to N_KV and HEAD_DIM."""
    kv_layout: gl.constexpr = dk.type.layout
    dtype: gl.constexpr = DK.dtype.element_ty
    out_rows = key0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, kv_layout))
    out_cols = gl.arange(0, dk.shape[1], layout=gl.SliceLayout(0, kv_layout))
    keep = gl.expand_dims(out_rows < N_KV, 1) & gl.expand_dims(out_cols < HEAD_DIM, 0)
    row_off = gl.expand_dims(out_rows.to(gl.int64), 1)
    col_off = gl.expand_dims(out_cols, 0)
    gl.store(DK + row_off * stride_dkn + col_off, dk.to(dtype), mask=keep)
    gl.store(DV + row_off * stride_dvn + col_off, dv.to(dtype), mask=keep)


@gluon.jit
def attn_bwd(Q, K, V, DO, DQ_ACC, DK, DV, LSE, DELTA,
             stride_qz, stride_qh, stride_qm, stride_kz, stride_kh, stride_kn,
             stride_vz, stride_vh, stride_vn, stride_doz, stride_doh, stride_dom,
             stride_dkz, stride_dkh, stride_dkn, stride_dvz, stride_dvh, stride_dvn,
             H, N_Q, N_KV, N_PAD, sm_scale, qk_scale,
             IS_CAUSAL: gl.constexpr, HEAD_DIM: gl.constexpr, BLOCK_D: gl.constexpr,
             BLOCK_M: gl.constexpr, STAGES: gl.constexpr, Q_LAYOUT: gl.constexpr,
             KV_LAYOUT: gl.constexpr, DS_LAYOUT: gl.constexpr, CONSUMER_REGS: gl.constexpr,
             HOST_DESC: gl.constexpr, DQ_ROWS: gl.constexpr,
             DQ_UNDER_DK: gl.constexpr, DQ_PERM: gl.constexpr,
             HEAD_GROUP: gl.constexpr = 1, DELTA_SCALED: gl.constexpr = False,
             TMA_DKV: gl.constexpr = False, DKV_LAYOUT: gl.constexpr = None):  # fmt: skip
    BLOCK_N: gl.constexpr = CONSUMERS * ROWS
    pid_n = gl.program_id(0)  # causal: key block 0 has the most query blocks, first
    off_hz = gl.program_id(1)
    if HEAD_GROUP > 1:
        # Programs launch in (x, y) order; here the i-th launched takes key block i // size of
        # head i % size within its group of `size` heads, so each group's longest blocks go first.
        n_kb = gl.num_programs(0)
        lin = off_hz * n_kb + pid_n
        g0 = (lin // (n_kb * HEAD_GROUP)) * HEAD_GROUP
        r = lin - g0 * n_kb
        size = gl.minimum(gl.num_programs(1) - g0, HEAD_GROUP)
        pid_n = r // size
        off_hz = g0 + r - pid_n * size
    start_n = pid_n * BLOCK_N
    off_z = (off_hz // H).to(gl.int64)
    off_h = (off_hz % H).to(gl.int64)

    if HOST_DESC:
        # Descriptors over [B*H*N, d] built on the host (kernel.py takes this path only when every
        # head's rows are whole tiles, so no tile reaches into the next head).
        desc_q, desc_k, desc_v, desc_do = Q, K, V, DO
        q_base = off_hz * N_Q
        kv_base = off_hz * N_KV
    else:
        # Per-head descriptors: rows past N_Q / N_KV and columns past HEAD_DIM read zeros.
        desc_q = tma.make_tensor_descriptor(
            Q + off_z * stride_qz + off_h * stride_qh, [N_Q, HEAD_DIM], [stride_qm, 1],
            [BLOCK_M, BLOCK_D], Q_LAYOUT)  # fmt: skip
        desc_do = tma.make_tensor_descriptor(
            DO + off_z * stride_doz + off_h * stride_doh, [N_Q, HEAD_DIM], [stride_dom, 1],
            [BLOCK_M, BLOCK_D], Q_LAYOUT)  # fmt: skip
        desc_k = tma.make_tensor_descriptor(
            K + off_z * stride_kz + off_h * stride_kh, [N_KV, HEAD_DIM], [stride_kn, 1],
            [BLOCK_N, BLOCK_D], KV_LAYOUT)  # fmt: skip
        desc_v = tma.make_tensor_descriptor(
            V + off_z * stride_vz + off_h * stride_vh, [N_KV, HEAD_DIM], [stride_vn, 1],
            [BLOCK_N, BLOCK_D], KV_LAYOUT)  # fmt: skip
        q_base = 0
        kv_base = 0
    # Built on the host in every case: LSE and Delta over fp32 [B*H*N_PAD], each head padded to
    # whole query blocks (LSE with +inf, so P is 0 on padded queries); the dQ buffer as
    # [B*H*N_PAD, BLOCK_D] fp32, so its tiles never need clipping.
    desc_lse, desc_delta, desc_dq = LSE, DELTA, DQ_ACC
    dtype: gl.constexpr = desc_q.dtype

    if IS_CAUSAL:  # query blocks wholly before the first key see none of these keys
        m_first = start_n // BLOCK_M
    else:
        m_first = start_n * 0
    n_steps = gl.maximum(gl.cdiv(N_Q, BLOCK_M) - m_first, 0)

    vec_layout: gl.constexpr = desc_lse.layout
    q_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, BLOCK_D], Q_LAYOUT)
    do_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, BLOCK_D], Q_LAYOUT)
    k_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, BLOCK_D], KV_LAYOUT)
    v_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, BLOCK_D], KV_LAYOUT)
    ds_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_N, BLOCK_M], DS_LAYOUT)
    # One fp32 dQ tile per consumer, staged for the reduce-add.
    if DQ_ROWS:
        dq_smem = gl.allocate_shared_memory(gl.float32, [CONSUMERS, ROWS, BLOCK_D], desc_dq.layout)
    else:
        dq_smem = gl.allocate_shared_memory(
            gl.float32, [CONSUMERS, BLOCK_M, BLOCK_D // CONSUMERS], desc_dq.layout
        )
    lse_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_M], vec_layout)
    delta_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_M], vec_layout)
    kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    q_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    do_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    free = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    ds_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(do_ready.index(i), count=1)
        mbarrier.init(free.index(i), count=CONSUMERS)
    for i in gl.static_range(2):
        mbarrier.init(ds_ready.index(i), count=CONSUMERS)

    if TMA_DKV:  # DK and DV are [B, H, N, d] descriptors (kernel.py)
        dk_ptr, dv_ptr = DK, DV
    else:
        dk_ptr = DK + off_z * stride_dkz + off_h * stride_dkh
        dv_ptr = DV + off_z * stride_dvz + off_h * stride_dvh
    z, h = off_z.to(gl.int32), off_h.to(gl.int32)  # the descriptors' batch and head coordinates
    row_lse = off_hz * N_PAD + m_first * BLOCK_M
    gl.warp_specialize(
        [
            (_consumer, (q_smem, k_smem, v_smem, do_smem, lse_smem, delta_smem, ds_smem,
                         dq_smem.index(0), kv_bar, q_ready, do_ready, free, ds_ready, desc_dq,
                         dk_ptr, dv_ptr, stride_dkn, stride_dvn, z, h, start_n, m_first, n_steps,
                         off_hz * N_PAD, N_KV, HEAD_DIM, sm_scale, qk_scale, 0, IS_CAUSAL,
                         DQ_ROWS, DQ_UNDER_DK, DQ_PERM, BLOCK_M, BLOCK_D,
                         STAGES, DELTA_SCALED, TMA_DKV, DKV_LAYOUT)),
            (_consumer, (q_smem, k_smem, v_smem, do_smem, lse_smem, delta_smem, ds_smem,
                         dq_smem.index(1), kv_bar, q_ready, do_ready, free, ds_ready, desc_dq,
                         dk_ptr, dv_ptr, stride_dkn, stride_dvn, z, h, start_n, m_first, n_steps,
                         off_hz * N_PAD, N_KV, HEAD_DIM, sm_scale, qk_scale, 1, IS_CAUSAL,
                         DQ_ROWS, DQ_UNDER_DK, DQ_PERM, BLOCK_M, BLOCK_D,
                         STAGES, DELTA_SCALED, TMA_DKV, DKV_LAYOUT)),
            (_loader, (desc_q, desc_k, desc_v, desc_do, desc_lse, desc_delta, q_smem, k_smem,
                       v_smem, do_smem, lse_smem, delta_smem, kv_bar, q_ready, do_ready, free,
                       kv_base + start_n, q_base + m_first * BLOCK_M, row_lse, n_steps,
                       BLOCK_M, STAGES)),
        ],
        [4, 1],
        [CONSUMER_REGS, 24],
    )  # fmt: skip
