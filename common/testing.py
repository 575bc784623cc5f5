"""Problems and the error budget shared by the conformance suite and the GPU check script.

The budget follows FlashAttention's own tests: a stage passes when its largest error against the
float64 reference is at most ``FACTOR`` times the error of PyTorch's eager math run in the same
dtype, plus the rounding noise of that dtype at the output's magnitude and a few fp32 ulps of
accumulation order. No tolerance is tuned per test: a stage is as good as PyTorch's own
low-precision result, or it fails.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from common.capabilities import Capabilities
from common.reference import reference_attention, reference_lse

FACTOR = 2.0
# Every stage accumulates in fp32 whatever its input dtype, in a different (equally valid) order
# from PyTorch's, and the flash backward rebuilds P as exp2(s*log2(e) - LSE) with arguments up
# to ~16, which costs ~4 bits of relative precision. Where PyTorch's own error is ~0 (fp32, or a
# gradient that cancels to 0 as with one key), 32 fp32 ulps at the output's magnitude (~4e-6
# relative) is that noise floor; it is far below bf16/fp16 rounding and any real bug (>= 1e-3).
FP32_ACCUM_ULPS = 32


@dataclass(frozen=True)
class Problem:
    batch: int
    heads: int
    n_q: int
    n_k: int
    head_dim: int
    causal: bool = False
    dtype: torch.dtype = torch.float32
    # "contiguous", or "bnhd": tensors are views of a [B, N, H, D] buffer (seq stride H*D).
    layout: str = "contiguous"
    scale: float | None = None  # None: 1/sqrt(head_dim)

    def __str__(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        c = "-causal" if self.causal else ""
        lay = "" if self.layout == "contiguous" else f"-{self.layout}"
        sc = "" if self.scale is None else f"-scale{self.scale}"
        return f"{self.batch}x{self.heads}x{self.n_q}x{self.n_k}x{self.head_dim}{c}-{dt}{lay}{sc}"

    def fits(self, caps: Capabilities, interpreting: bool = False) -> bool:
        longest = max(self.n_q, self.n_k)
        cpu_limit = caps.interpreter_max_seq_len if interpreting else None
        return (cpu_limit is None or longest <= cpu_limit) and (
            self.dtype in caps.dtypes
            and caps.min_head_dim <= self.head_dim <= caps.max_head_dim
            and (caps.max_seq_len is None or longest <= caps.max_seq_len)
            and (caps.causal or not self.causal)
            and (caps.cross_lengths or self.n_q == self.n_k)
        )


def make_inputs(p: Problem, device, requires_grad=False, generator=None):
    """Fresh standard-normal q, k, v for problem ``p`` (never zeros), laid out as asked."""

    def one(n):
        # "bnhd": allocate [B, N, H, d] and view it as [B, H, N, d] (sequence stride H*d).
        shape = (
            (p.batch, n, p.heads, p.head_dim)
            if p.layout == "bnhd"
            else (p.batch, p.heads, n, p.head_dim)
        )
        t = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
        t = t.to(p.dtype)
        t = t.transpose(1, 2) if p.layout == "bnhd" else t
        return t.requires_grad_(requires_grad)

    return one(p.n_q), one(p.n_k), one(p.n_k)


@contextlib.contextmanager
def torch_matmul_precision(caps: Capabilities):
    """Run PyTorch's fp32 matmuls the way the stage runs its fp32 dots (tf32 or ieee)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = caps.fp32_matmul == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def rounding_noise(ref: torch.Tensor, dtype: torch.dtype) -> float:
    """Rounding error of ``dtype`` at the magnitude of ``ref`` (FlashAttention's ``+0.3-0.3``)."""
    r = ref.to(dtype)
    return ((r + 0.3 - 0.3) - r).abs().max().item() if r.numel() else 0.0


@dataclass
class Verdict:
    name: str
    error: float
    torch_error: float
    budget: float

    @property
    def ok(self) -> bool:
        return self.error <= self.budget  # NaN compares False: a NaN never passes

    def __str__(self) -> str:
        return (
            f"{self.name}: max|err| {self.error:.3e} vs budget {self.budget:.3e} "
            f"(PyTorch same-dtype error {self.torch_error:.3e})"
        )


def judge(name: str, out: torch.Tensor, ref64: torch.Tensor, torch_lowp: torch.Tensor) -> Verdict:
    """Compare ``out`` with the float64 reference under the budget set by PyTorch's own error."""
    if out.shape != ref64.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != {tuple(ref64.shape)}")
    if out.numel() == 0:
        return Verdict(name, 0.0, 0.0, 0.0)
    ref = ref64.double()
    err = (out.double() - ref).abs()
    # Any NaN or Inf in the output (an unwritten, poisoned element among them) fails outright.
    error = float("nan") if not torch.isfinite(out).all() else err.max().item()
    torch_error = (torch_lowp.double() - ref).abs().max().item()
    accum = FP32_ACCUM_ULPS * torch.finfo(torch.float32).eps * max(1.0, ref.abs().max().item())
    budget = FACTOR * torch_error + rounding_noise(ref, out.dtype) + accum
    return Verdict(name, error, torch_error, budget)


def forward_verdict(stage, p: Problem, device) -> Verdict:
    """Run a stage's forward on fresh inputs for ``p`` and judge it."""
    from common.validation import poisoned_outputs

    scale = p.scale
    q, k, v = make_inputs(p, device)
    with poisoned_outputs():
        out = stage.attention(q, k, v, is_causal=p.causal, scale=scale)
    ref = reference_attention(q, k, v, is_causal=p.causal, scale=scale)
    with torch_matmul_precision(stage.capabilities):
        lowp = reference_attention(q, k, v, is_causal=p.causal, scale=scale, dtype=p.dtype)
    return judge(f"{stage.name} {p} out", out, ref, lowp)


def backward_verdicts(stage, p: Problem, device) -> list[Verdict]:
    """Judge dq, dk, dv of a stage against float64 autograd of the reference."""
    from common.validation import poisoned_outputs

    scale = p.scale
    q, k, v = make_inputs(p, device, requires_grad=True)
    do = torch.randn(p.batch, p.heads, p.n_q, p.head_dim, device=device).to(p.dtype)
    with poisoned_outputs():
        out = stage.attention(q, k, v, is_causal=p.causal, scale=scale)
        grads = torch.autograd.grad(out, (q, k, v), do)
    # The reference's own float64 leaves: autograd returns a leaf's gradient in the leaf's dtype,
    # so gradients taken through fp16/bf16 leaves would come back rounded, and a stage within half
    # an ulp of the truth could read one whole ulp off (CI saw dV 1.95e-3 against a 1.48e-3 budget).
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, is_causal=p.causal, scale=scale)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), do.double())
    with torch_matmul_precision(stage.capabilities):
        lowp = reference_attention(q, k, v, is_causal=p.causal, scale=scale, dtype=p.dtype)
        lowp_grads = torch.autograd.grad(lowp, (q, k, v), do)
    verdicts = [judge(f"{stage.name} {p} out", out.detach(), ref.detach(), lowp.detach())]
    for name, g, r, lo in zip(("dq", "dk", "dv"), grads, ref_grads, lowp_grads, strict=True):
        verdicts.append(judge(f"{stage.name} {p} {name}", g, r, lo))
    return verdicts


def grads(q, k, v, do, causal, fn):
    """dQ, dK, dV of ``fn(q, k, v, causal)`` for the output gradient ``do`` (fresh leaves)."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, causal)
    return torch.autograd.grad(out, (q, k, v), do.to(out.dtype))


def reference_grads(q, k, v, do, causal):
    """The float64 reference's dQ, dK, dV."""
    return grads(
        q.double(), k.double(), v.double(), do.double(), causal,
        lambda q, k, v, c: reference_attention(q, k, v, is_causal=c),
    )  # fmt: skip


def assert_grads_close(got, want, tol):
    """Each gradient within ``tol`` of the reference's largest entry (at least 1)."""
    for name, g, r in zip("qkv", got, want, strict=True):
        err = (g.double() - r).abs().max().item()
        assert err <= tol * max(r.abs().max().item(), 1.0), f"d{name}: max|err| {err:.3g}"


def assert_forward_launch_writes_every_row(launch, p: Problem, config, device):
    """Launch a forward kernel directly (``launch(q, k, v, o, lse, causal, scale, config=...)``)
    into NaN-filled O and base-2 LSE, and check every row of both against float64: a row or LSE
    entry the kernel failed to write stays NaN and fails."""
    q, k, v = make_inputs(p, device)
    o = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:3], float("nan"), device=q.device)
    scale = p.head_dim**-0.5
    launch(q, k, v, o, lse, p.causal, scale, config=config)
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=p.causal)
    torch.testing.assert_close(o.double(), ref, rtol=0, atol=2e-2)
    want = reference_lse(q, k, is_causal=p.causal, scale=scale)
    torch.testing.assert_close(lse.double() * math.log(2.0), want, rtol=0, atol=1e-2)


def conformance_problems(on_gpu: bool) -> list[Problem]:
    """The problems the suite draws from; each stage runs those that fit its capabilities.

    Lengths are odd on purpose (1, 17, 33, 130, ...: not powers of two, not multiples of any
    block) beside round ones; query and key lengths differ in some; head dims include 24 and 96.
    Under the interpreter the sizes stay small (it runs each program serially on the CPU).
    """
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    P = Problem
    if not on_gpu:
        return [
            P(1, 1, 1, 1, 16),
            P(1, 1, 1, 1, 16, causal=True),
            P(2, 3, 17, 17, 24, causal=True),
            P(2, 3, 17, 17, 24, scale=0.37),
            P(1, 2, 33, 33, 64, layout="bnhd"),
            P(1, 2, 33, 33, 64, causal=True, dtype=bf16, layout="bnhd"),
            P(1, 1, 40, 23, 96, causal=True, dtype=f16),
            P(1, 1, 23, 40, 128, causal=True, scale=-0.3),
            P(1, 1, 23, 40, 128, dtype=bf16),
            P(1, 1, 64, 64, 16, causal=True, dtype=f16),
            P(1, 1, 130, 130, 64, causal=True),
            P(1, 2, 130, 77, 32, dtype=bf16, scale=1.3),
        ]
    problems = []
    for n, d in ((1, 64), (17, 128), (130, 96), (1000, 64), (4096, 128), (4224, 256), (16384, 128)):
        for causal in (False, True):
            problems.append(P(1, 2 if n <= 4224 else 1, n, n, d, causal, bf16))
    for causal in (False, True):
        problems += [
            P(1, 2, 1024, 1024, 128, causal, f16),
            P(1, 2, 1000, 1000, 64, causal, f32),
            P(1, 2, 4096, 4096, 64, causal, f32),
        ]
    problems += [
        P(2, 3, 1000, 1000, 64, True, bf16, "bnhd"),
        P(1, 4, 777, 1500, 128, True, f16),
        P(1, 4, 1500, 777, 64, True, bf16, scale=0.05),
        P(4, 8, 512, 512, 128, False, bf16, "bnhd"),
        P(1, 2, 4096, 4096, 128, False, f32, "bnhd"),
    ]
    return problems


def record_kernel_or_fallback(monkeypatch, kernel, fallback) -> list[bool]:
    """Wrap a stage's ``kernel.launch_forward`` and the ``_forward`` of the stage it hands over
    to (``fallback``, a kernel module), so each forward call appends True (the stage's kernel
    ran) or False (the fallback did) to the returned list."""
    calls = []
    real_launch, real_fallback = kernel.launch_forward, fallback._forward

    def launch(*args, **kwargs):
        calls.append(True)
        return real_launch(*args, **kwargs)

    def fallback_forward(*args, **kwargs):
        calls.append(False)
        return real_fallback(*args, **kwargs)

    monkeypatch.setattr(kernel, "launch_forward", launch)
    monkeypatch.setattr(fallback, "_forward", fallback_forward)
    return calls


def assert_broadcast_kv_is_correct(attention, causal: bool, device) -> None:
    """``attention`` on K and V shared by every batch entry and head (stride 0 there, as from
    ``expand``), checked against float64."""
    q = torch.randn(2, 3, 300, 64, device=device, dtype=torch.bfloat16)
    k, v = (
        torch.randn(1, 1, 300, 64, device=device, dtype=torch.bfloat16).expand(2, 3, 300, 64)
        for _ in "kv"
    )
    out = attention(q, k, v, is_causal=causal)
    ref = reference_attention(q.double(), k.double(), v.double(), is_causal=causal)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-2)
