"""The redo of rows the max-free softmax could not keep (v08's softmax.py, NO_MAX).

The persistent forward takes a mask-free tile's exponentials against the running max without
taking the tile's own max, and rescales a warp's rows by an exact power of two when their sums
outgrow it. A row whose sum over one tile reaches 2^126 (a score about 118 or more, base 2, over
its running max: 82 nats) cannot be repaired from P, which may already be inf; the kernel sets
its row sum to NaN, so its LSE leaves the kernel NaN. This pass recomputes every block of 64
rows that holds such a row with v04's kernel body (the plain online softmax, a row max per
tile), and leaves every other block untouched.

Each program reads 16 blocks' LSE (4 KiB) and returns unless one is NaN: at 4k tokens and 128
heads, 512 programs that read 2 MiB in all. With its launch that is about 12 us of host and GPU
time per call, which short calls do not earn back (kernel.no_max). Rows whose inputs hold NaN or
inf come out NaN either way, and are recomputed to NaN again.
"""

import triton
import triton.language as tl

from common.launch import Launcher
from common.triton_helpers import interp_bf16
from common.validation import interpreting
from variants.v04_flash2 import configs as v04_configs
from variants.v04_flash2.kernel import _attn_fwd_block

CHUNKS = 16  # blocks of rows whose LSE one program checks


@triton.jit
def _redo_nan_rows(
    Q, K, V, Out, LSE,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_Q, N_KV, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CHUNKS: tl.constexpr,
):  # fmt: skip
    off_hz = tl.program_id(1)
    first = tl.program_id(0) * (CHUNKS * BLOCK_M)
    rows = first + tl.arange(0, CHUNKS * BLOCK_M)
    lse = tl.load(LSE + off_hz.to(tl.int64) * N_Q + rows, mask=rows < N_Q, other=0.0)
    bad = tl.max(tl.reshape((lse != lse).to(tl.int32), [CHUNKS, BLOCK_M]), axis=1)
    if tl.max(bad, axis=0) > 0:
        chunk = tl.arange(0, CHUNKS)
        for c in range(CHUNKS):
            if tl.max(tl.where(chunk == c, bad, 0), axis=0) > 0:
                _attn_fwd_block(Q, K, V, Out, LSE,
                                stride_qz, stride_qh, stride_qm, stride_qk,
                                stride_kz, stride_kh, stride_kn, stride_kk,
                                stride_vz, stride_vh, stride_vn, stride_vk,
                                stride_oz, stride_oh, stride_om, stride_ok,
                                H, N_Q, N_KV, qk_scale, first + c * BLOCK_M, off_hz,
                                IS_CAUSAL, HEAD_DIM, BLOCK_D, INTERP_BF16, True, BLOCK_M,
                                BLOCK_N)  # fmt: skip


_REDO = Launcher(_redo_nan_rows)


def tiles():
    """The redo's tiles: rows are recomputed in blocks of BLOCK_M (under the interpreter, which
    runs every element in numpy, v04's small ones)."""
    if interpreting():
        return {key: v04_configs.INTERPRETER_FWD[key] for key in ("BLOCK_M", "BLOCK_N")}
    return {"BLOCK_M": 64, "BLOCK_N": 64}


def redo_nan_rows(q, k, v, o, lse, causal, qk_scale):
    """Recompute O and the base-2 LSE of every block of BLOCK_M rows that holds a NaN LSE, in
    place (``qk_scale``: the softmax scale times log2(e))."""
    B, H, n_q, d = q.shape
    sizes = tiles()
    grid = (triton.cdiv(n_q, CHUNKS * sizes["BLOCK_M"]), B * H)
    _REDO[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(), H, n_q, k.shape[2],
        qk_scale, IS_CAUSAL=causal, HEAD_DIM=d, BLOCK_D=max(16, triton.next_power_of_2(d)),
        INTERP_BF16=interp_bf16(q.dtype), CHUNKS=CHUNKS, num_warps=4, **sizes,
    )  # fmt: skip
