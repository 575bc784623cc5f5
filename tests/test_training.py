"""Stages with a backward, used as in training: autograd inside a module, the returned
log-sum-exp, determinism, an expanded upstream gradient."""

import inspect

import pytest
import torch

from common.reference import reference_lse
from common.testing import Problem, make_inputs
from tests.stages import STAGES, stage_or_fail

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TRAINABLE = [n for n, s in STAGES.items() if not s.available or s.capabilities.backward]
WITH_LSE = [
    n
    for n in TRAINABLE
    if STAGES[n].available and "return_lse" in inspect.signature(STAGES[n].attention).parameters
]


class SelfAttention(torch.nn.Module):
    def __init__(self, dim, heads, attend):
        super().__init__()
        self.heads, self.attend = heads, attend
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).unbind(2)
        # [B, N, H, d] views transposed to [B, H, N, d]: non-contiguous inputs, as in real models
        o = self.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.out(o.transpose(1, 2).reshape(B, N, C))


@pytest.mark.parametrize("stage_name", TRAINABLE)
def test_loss_backward_in_a_module_matches_sdpa(stage_name):
    stage = stage_or_fail(stage_name)
    torch.manual_seed(0)
    ours = SelfAttention(64, 2, stage.attention).to(DEVICE)
    ref = SelfAttention(64, 2, torch.nn.functional.scaled_dot_product_attention).to(DEVICE)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 37, 64, device=DEVICE)
    for model in (ours, ref):
        model(x).square().mean().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("stage_name", WITH_LSE)
def test_return_lse_is_the_natural_log_sum_exp(stage_name):
    stage = stage_or_fail(stage_name)
    q, k, v = make_inputs(Problem(1, 2, 45, 30, 32, causal=True), DEVICE)
    out, lse = stage.attention(q, k, v, is_causal=True, scale=0.2, return_lse=True)
    want = reference_lse(q, k, is_causal=True, scale=0.2)
    torch.testing.assert_close(lse.double(), want, rtol=1e-5, atol=1e-5)
    assert lse.dtype == torch.float32 and lse.shape == (1, 2, 45)


@pytest.mark.parametrize("stage_name", TRAINABLE)
def test_forward_and_backward_are_bitwise_deterministic(stage_name):
    stage = stage_or_fail(stage_name)
    q, k, v = make_inputs(
        Problem(1, 2, 70, 70, 64, causal=True, dtype=torch.float16), DEVICE, requires_grad=True
    )
    do = torch.randn_like(q)
    runs = []
    for _ in range(2):
        out = stage.attention(q, k, v, is_causal=True)
        runs.append((out, *torch.autograd.grad(out, (q, k, v), do)))
    for name, a, b in zip(("out", "dq", "dk", "dv"), *runs, strict=True):
        if name == "dq" and not stage.capabilities.deterministic_dq:
            # Summed by atomics in a timing-dependent order: equal up to fp32 rounding.
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
        else:
            assert torch.equal(a, b), name


@pytest.mark.parametrize("stage_name", TRAINABLE)
def test_expanded_upstream_gradient(stage_name):
    stage = stage_or_fail(stage_name)
    # out.sum().backward() hands the kernel a stride-0 dO; it must be read, not assumed dense.
    q, k, v = make_inputs(Problem(1, 1, 20, 20, 16), DEVICE, requires_grad=True)
    stage.attention(q, k, v).sum().backward()
    qr, kr, vr = (t.detach().double().requires_grad_() for t in (q, k, v))
    torch.nn.functional.scaled_dot_product_attention(qr, kr, vr).sum().backward()
    for a, b in ((q, qr), (k, kr), (v, vr)):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-5)
