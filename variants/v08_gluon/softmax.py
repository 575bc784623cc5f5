"""The online softmax of the Gluon forward (v08, and v10's switches): one key tile's row max,
exponentials and row sums, and the accumulator's rescale, in the wgmma accumulator layout (a
thread holds two rows, r and r + 8 of its warp's 16, and 32 of each row's 128 scores; the four
lanes of a quad hold the rest of its rows).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

ROWS = gl.constexpr(64)  # query rows per consumer warpgroup: one wgmma M-tile

# Lazy rescaling (LAZY = 1; v05's tuning option, here with FlashAttention-4's threshold): the row
# max the exponentials are taken against moves only when a tile's max passes it by more than
# LAZY_TAU (base 2). P then stays below 2^8 (well inside bf16's and fp16's range; the output and
# LSE are the same sums, only P's largest terms are rounded to 16 bits too), the max stops moving
# after a row's first tiles, and a warp skips the accumulator's multiply when none of its 16 rows
# moved: a vote and a uniform branch over the multiplies, in inline PTX, as Gluon has no branch on
# a per-warp value. (v05's block-wide branch between the MMAs cost more than it saved.)
LAZY_TAU = gl.constexpr(8.0)

# Whether any lane's two rows (a thread holds rows r and r + 8 of its warp's 16 in the wgmma
# layout) have alpha != 1, as 1 / 0 in every lane of the warp.
WARP_ANY_RESCALE = gl.constexpr(
    "{ .reg .pred %la, %lb; setp.neu.f32 %la, $2, 0f3F800000; setp.neu.f32 %lb, $3, 0f3F800000;"
    " or.pred %la, %la, %lb; vote.sync.any.pred %la, %la, 0xffffffff; selp.u32 $0, 1, 0, %la;"
    " mov.b32 $1, $0; }"
)


@gluon.jit
def _warp_any_rescale(alpha):
    """WARP_ANY_RESCALE over a tensor holding two rows' alphas per thread."""
    return gl.inline_asm_elementwise(
        WARP_ANY_RESCALE, "=r,=r,f,f", [alpha], dtype=gl.int32, is_pure=True, pack=2
    )


@gluon.constexpr_function
def _rescale_asm(n):
    """PTX for one thread's n accumulator elements: multiplied by their rows' alpha unless the
    warp's flag is 0 (operands: n outputs, n accumulators tied to them, n alphas, n flags)."""
    muls = " ".join(f"mul.f32 ${i}, ${i}, ${2 * n + i};" for i in range(n))
    return (f"{{ .reg .pred %lz; setp.eq.u32 %lz, ${3 * n}, 0; @%lz bra.uni LZ_DONE; {muls}"
            " LZ_DONE: }")  # fmt: skip


@gluon.constexpr_function
def _rescale_constraints(n):
    return ",".join(["=f"] * n + [str(i) for i in range(n)] + ["f"] * n + ["r"] * n)


@gluon.jit
def _new_max(m_i, m_tile, LAZY: gl.constexpr):
    """The row max the tile's exponentials are taken against (LAZY: moved only by > LAZY_TAU)."""
    m_new = gl.maximum(m_i, m_tile)
    if LAZY:
        m_new = gl.where(m_new > m_i + LAZY_TAU, m_new, m_i)
    return m_new


@gluon.jit
def _rescale(acc, alpha, LAZY: gl.constexpr):
    """The accumulator brought to the new row max: every row times its alpha, or (LAZY) only in
    warps where some row's alpha is not 1."""
    o_rows: gl.constexpr = gl.SliceLayout(1, acc.type.layout)
    alpha = gl.convert_layout(alpha, o_rows)
    if not LAZY:
        acc = acc * gl.expand_dims(alpha, 1)
    else:
        flag = _warp_any_rescale(alpha)
        N: gl.constexpr = acc.shape[0] * acc.shape[1] // (32 * gl.num_warps())
        acc = gl.inline_asm_elementwise(
            _rescale_asm(N), _rescale_constraints(N),
            [acc, gl.expand_dims(alpha, 1), gl.expand_dims(flag, 1)],
            dtype=gl.float32, is_pure=True, pack=N,
        )  # fmt: skip
    return acc


# Row sums kept per thread (THREAD_SUMS = 1; FlashAttention-3's softmax does the same): in the
# wgmma layout a thread holds 32 of a row's 128 scores and the other 96 sit in the three lanes
# beside it. The sum is linear, so each thread can carry its own part of l (a [ROWS, 4] tensor,
# the 4 across those lanes) through the key loop and the lanes add theirs once, at the end:
# no shuffles per key tile, and a tree of depth 5 over the thread's elements where gl.sum adds
# them in a chain of 31. ptxas places the row sum after P@V's wait, in front of the next QK^T.
@gluon.constexpr_function
def _parts_shape(n):
    """A [ROWS, n] wgmma tile's columns c = 8 x chunk + 2 x lane + e split into axes: each chunk
    bit, then the quad's lane (4), then e (2). Only the lane axis crosses threads."""
    return [64] + [2] * (n.bit_length() - 4) + [4, 2]


@gluon.jit
def _thread_sums(p):
    """Each thread's part of its rows' sums of a [ROWS, N] tile, as [ROWS, 4] (the quad's lanes):
    the chunk and e bits, the thread's own, are summed pairwise."""
    SHAPE: gl.constexpr = _parts_shape(p.shape[1])
    x = gl.sum(gl.reshape(p, SHAPE), axis=len(SHAPE) - 1)
    for _ in gl.static_range(len(SHAPE) - 3):
        x = gl.sum(x, axis=1)
    return x


@gluon.jit
def _row_sums_init(s_layout: gl.constexpr, BLOCK_N: gl.constexpr, THREAD_SUMS: gl.constexpr):
    """Zero row sums: [ROWS] per row, or (THREAD_SUMS) [ROWS, 4] per thread."""
    if THREAD_SUMS:
        gl.static_assert(BLOCK_N == 128, "per-thread row sums assume 128-key tiles")
        l_i = _thread_sums(gl.zeros([ROWS, BLOCK_N], gl.float32, s_layout))
    else:
        l_i = gl.zeros([ROWS], gl.float32, gl.SliceLayout(1, s_layout))
    return l_i


@gluon.jit
def _softmax(s, m_i, l_i, col0, row0, N_KV, qk_scale, IS_CAUSAL: gl.constexpr,
             BLOCK_N: gl.constexpr, s_layout: gl.constexpr, LAZY: gl.constexpr = 0,
             THREAD_SUMS: gl.constexpr = 0):  # fmt: skip
    """One tile's online-softmax step: P (unnormalised), the new row max, row sum and the factor
    that brings the accumulator to the new max. Only tiles that cross the key count or the causal
    diagonal pay for the mask."""
    needs_mask = col0 + BLOCK_N > N_KV
    if IS_CAUSAL:
        needs_mask = needs_mask | (col0 + BLOCK_N > row0 + 1)
    if needs_mask:
        cols = col0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        keep = gl.expand_dims(cols < N_KV, 0)
        if IS_CAUSAL:
            rows = row0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, s_layout))
            keep = keep & (gl.expand_dims(cols, 0) <= gl.expand_dims(rows, 1))
        s = gl.where(keep, s * qk_scale, float("-inf"))
        m_new = _new_max(m_i, gl.max(s, axis=1), LAZY)
        p = gl.exp2(s - gl.expand_dims(m_new, 1))
    else:  # the scale is positive (host side), so it commutes with the row max
        m_new = _new_max(m_i, gl.max(s, axis=1) * qk_scale, LAZY)
        p = gl.exp2(s * qk_scale - gl.expand_dims(m_new, 1))
    alpha = gl.exp2(m_i - m_new)
    if THREAD_SUMS:
        a = gl.convert_layout(alpha, gl.SliceLayout(1, l_i.type.layout))
        l_i = l_i * gl.expand_dims(a, 1) + _thread_sums(p)
    else:
        l_i = l_i * alpha + gl.sum(p, axis=1)
    return p, m_new, l_i, alpha


# The max-free softmax (NO_MAX = 1; v10, NOTES run 22). After a row block's first tile the
# running max m changes only when a tile's exponentials outgrow it, so a mask-free tile takes
# P = exp2(S scale - m) with no row max at all (the max was 64-84 of a tile's 350-430 instructions
# per thread, and the forward's time follows its consumers' instruction count: NOTES runs 20-21).
# The per-thread row sums guard it: a P above 2^8 (lazy rescaling's bound) makes its thread's
# part of the sum exceed 2^8, so when no part in a warp does (two compares and a vote) the tile is
# exact as it stands. A warp whose vote fails branches (warp-uniform, in PTX) to a fix-up that
# needs no max either: with T a row's sum over the tile (the quad's four parts), the reference
# moves by k = floor(log2 T) + 1 and P, the sums and the accumulator are multiplied by 2^-k, a
# power of two, so the fix-up is exact and every P is below 1 after it. A row whose T reaches
# 2^126 (a score at least ~118 base-2 units over the running max: P may already be inf) cannot be
# repaired from P; its row sum is set to NaN, which the rest of the block keeps, so its LSE comes
# out NaN and a pass after the kernel recomputes the row (v10's redo.py).
# Operands (two rows per thread): l, m, alpha, flag out; the thread's parts, l and m in. The
# outputs are early-clobber (=&): they are written before the branch reads the parts, and LLVM
# otherwise may give an output an input's register.
_GUARD_ROW = (
    "shfl.sync.bfly.b32 %gt, $P, 1, 0x1f, 0xffffffff; add.f32 %gs, $P, %gt;"
    " shfl.sync.bfly.b32 %gt, %gs, 2, 0x1f, 0xffffffff; add.f32 %gs, %gs, %gt;"
    " mov.b32 %ge, %gs; shr.u32 %ge, %ge, 23; sub.s32 %gk, %ge, 126;"
    " setp.le.f32 %gb, %gs, 0f43800000; @%gb mov.b32 %gk, 0;"
    " setp.ge.u32 %gc, %ge, 253; @%gc mov.b32 %gk, 0;"
    " sub.s32 %ge, 127, %gk; shl.b32 %ge, %ge, 23; mov.b32 $A, %ge;"
    " cvt.rn.f32.s32 %gt, %gk; add.f32 $M, $M, %gt; mul.f32 $L, $L, $A;"
    " @%gc mov.b32 $L, 0f7FFFFFFF;"
)
MAXLESS_GUARD = gl.constexpr(
    "{ .reg .pred %gb, %gc, %gw; .reg .f32 %gt, %gs; .reg .b32 %ge, %gk;"
    " setp.gt.f32 %gb, $8, 0f43800000; setp.gt.f32 %gc, $9, 0f43800000; or.pred %gb, %gb, %gc;"
    " vote.sync.any.pred %gw, %gb, 0xffffffff;"
    " add.f32 $0, $10, $8; add.f32 $1, $11, $9; mov.b32 $2, $12; mov.b32 $3, $13;"
    " mov.b32 $4, 0f3F800000; mov.b32 $5, 0f3F800000; selp.u32 $6, 1, 0, %gw; mov.b32 $7, $6;"
    " @!%gw bra.uni NM_DONE; "
    + _GUARD_ROW.replace("$P", "$8").replace("$A", "$4").replace("$M", "$2").replace("$L", "$0")
    + " "
    + _GUARD_ROW.replace("$P", "$9").replace("$A", "$5").replace("$M", "$3").replace("$L", "$1")
    + " NM_DONE: }"
)


@gluon.jit
def _keep_first(a, b):
    return a


@gluon.jit
def _to_parts(x, layout: gl.constexpr, N: gl.constexpr):
    """[ROWS] row values (SliceLayout(1, layout)) in the layout of a [ROWS, N] tile's per-thread
    parts, [ROWS, 4], every lane of a quad holding its rows' values. The broadcast's copies are
    reduced by keeping one: no instruction."""
    SHAPE: gl.constexpr = _parts_shape(N)
    t = gl.reshape(gl.expand_dims(x, 1).broadcast_to([ROWS, N]), SHAPE)
    t = gl.reduce(t, len(SHAPE) - 1, _keep_first)
    for _ in gl.static_range(len(SHAPE) - 3):
        t = gl.reduce(t, 1, _keep_first)
    return t


@gluon.jit
def _parts_to_tile(x4, layout: gl.constexpr, N: gl.constexpr):
    """Per-thread parts' [ROWS, 4] values over a [ROWS, N] tile in ``layout``, each element
    taking its thread's value for its row: register copies only."""
    SHAPE: gl.constexpr = _parts_shape(N)
    t = gl.convert_layout(x4, _thread_sums(gl.zeros([ROWS, N], gl.float32, layout)).type.layout)
    for _ in gl.static_range(len(SHAPE) - 3):
        t = gl.expand_dims(t, 1)
    t = gl.expand_dims(t, len(SHAPE) - 1).broadcast_to(SHAPE)
    return gl.convert_layout(gl.reshape(t, [ROWS, N]), layout)


@gluon.jit
def _rescale_rows(x, alpha4, flag4):
    """A [ROWS, N] tile's rows times their alpha (per-thread parts' layout), skipped by every
    warp whose flag is 0."""
    layout: gl.constexpr = x.type.layout
    N: gl.constexpr = x.shape[1]
    PER: gl.constexpr = ROWS * N // (32 * gl.num_warps())
    return gl.inline_asm_elementwise(
        _rescale_asm(PER), _rescale_constraints(PER),
        [x, _parts_to_tile(alpha4, layout, N), _parts_to_tile(flag4, layout, N)],
        dtype=gl.float32, is_pure=True, pack=PER,
    )  # fmt: skip


@gluon.jit
def _softmax_maxless(s, m4, l4, col0, row0, N_KV, qk_scale, IS_CAUSAL: gl.constexpr,
                     BLOCK_N: gl.constexpr, s_layout: gl.constexpr,
                     LAZY: gl.constexpr):  # fmt: skip
    """_softmax with the row stats in the per-thread parts' layout (m4, l4: [ROWS, 4]): a tile
    that needs the mask takes the max as before, a mask-free one none (the guard above). Returns
    P, m4, l4 and the accumulator's alpha and flag (per warp: whether any row's alpha is not 1)."""
    needs_mask = col0 + BLOCK_N > N_KV
    if IS_CAUSAL:
        needs_mask = needs_mask | (col0 + BLOCK_N > row0 + 1)
    if needs_mask:
        m_i = gl.convert_layout(gl.max(m4, axis=1), gl.SliceLayout(1, s_layout))
        p, m_new, l4, alpha = _softmax(
            s, m_i, l4, col0, row0, N_KV, qk_scale, IS_CAUSAL, BLOCK_N, s_layout, LAZY, 1
        )
        m4 = _to_parts(m_new, s_layout, BLOCK_N)
        alpha4 = _to_parts(alpha, s_layout, BLOCK_N)
        flag4 = _warp_any_rescale(alpha4)
    else:
        p = gl.exp2(s * qk_scale - _parts_to_tile(m4, s_layout, BLOCK_N))
        l4, m4, alpha4, flag4 = gl.inline_asm_elementwise(
            MAXLESS_GUARD, "=&f,=&f,=&f,=&f,=&f,=&f,=&r,=&r,f,f,f,f,f,f", [_thread_sums(p), l4, m4],
            dtype=(gl.float32, gl.float32, gl.float32, gl.int32), is_pure=True, pack=2,
        )  # fmt: skip
        p = _rescale_rows(p, alpha4, flag4)
    return p, m4, l4, alpha4, flag4
