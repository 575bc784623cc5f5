"""Every stage inside a CUDA graph and under torch.compile (GPU only).

At small shapes the host's work per call (input checks, descriptors, Triton's launcher: on an
H200's host 0.12-0.2 ms to issue a forward and 0.75-1.05 ms a training step for v10, against
cuDNN's 0.04-0.07 and 0.16-0.32; bench/host.py) outlasts the kernels; a captured graph replays the
launches for a few microseconds. That needs no host sync,
no host-side read of a device value and no cached device tensor freed while a graph still reads
it, and the replay must read the inputs' current contents. Dynamo must run the stages too
(graph-breaking where it cannot trace them), since a model that calls them is often compiled."""

import pytest
import torch

from bench.host import graphed
from common.capabilities import sm_major
from common.testing import Problem, make_inputs
from tests.stages import STAGES, stage_or_fail

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Ragged against every stage's tiles (300 = 2 x 128 + 44); two batches, three heads.
SHAPE = (2, 3, 300, 300, 64)


def _problem(stage, causal: bool) -> Problem:
    caps = stage.capabilities
    dtype = next(d for d in (torch.bfloat16, torch.float16, torch.float32) if d in caps.dtypes)
    return Problem(*SHAPE, causal=causal, dtype=dtype)


def _cases():
    return [
        pytest.param(name, causal, id=f"{name}-{'causal' if causal else 'full'}")
        for name, s in STAGES.items()
        for causal in (False, True)
        if not s.available or causal <= s.capabilities.causal
    ]


def _step(stage, q, k, v, do, causal):
    """The forward, and with ``do`` the gradients (autograd.grad: no .grad accumulation)."""
    out = stage.attention(q, k, v, is_causal=causal)
    if do is None:
        return (out,)
    return (out, *torch.autograd.grad(out, (q, k, v), do))


def _refill(tensors, generator):
    with torch.no_grad():
        for t in tensors:
            t.copy_(torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype))


def _setup(stage_name, causal):
    """The stage, its inputs (``do`` None without a backward) and the grad mode to call it in."""
    stage = stage_or_fail(stage_name)
    p = _problem(stage, causal)
    if not p.fits(stage.capabilities):
        pytest.skip(f"{stage_name} does not take {p}")
    train = stage.capabilities.backward
    q, k, v = make_inputs(p, "cuda", requires_grad=train)
    do = torch.randn_like(q) if train else None
    return stage, (q, k, v, do), torch.enable_grad() if train else torch.no_grad()


@pytest.mark.parametrize(("stage_name", "causal"), _cases())
def test_a_captured_graph_replays_on_new_inputs_as_eager_runs(stage_name, causal):
    stage, inputs, grad = _setup(stage_name, causal)

    def call():
        with grad:
            return _step(stage, *inputs, causal)

    replay, captured = graphed(call)
    gen = torch.Generator(device="cuda").manual_seed(1)
    for _ in range(2):  # new contents in the same tensors: the replay must read them
        _refill([t for t in inputs if t is not None], gen)
        replay()
        eager = call()
        for name, got, want in zip(("out", "dq", "dk", "dv"), captured, eager, strict=False):
            # dQ may differ in its last bit where a backward sums it with atomics.
            torch.testing.assert_close(got, want, msg=f"{stage_name}: {name}")
        assert torch.isfinite(captured[0]).all()


@pytest.mark.parametrize(("stage_name", "causal"), _cases())
def test_runs_under_torch_compile_as_eagerly(stage_name, causal):
    stage, inputs, grad = _setup(stage_name, causal)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: _step(stage, *a, causal), backend="eager")
    with grad:
        got, want = compiled(*inputs), _step(stage, *inputs, causal)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=False):
        torch.testing.assert_close(a, b, msg=f"{stage_name}: {name}")


def test_v10_refuses_a_shape_first_met_during_capture():
    stage = stage_or_fail("v10_persistent")
    if sm_major(torch.cuda.current_device()) != 9:
        pytest.skip("v10's kernel (and its schedule) runs on Hopper only")
    from variants.v10_persistent import schedule

    q, k, v = make_inputs(Problem(*SHAPE, dtype=torch.bfloat16), "cuda")
    schedule.schedule.cache_clear()  # as if this shape were new; held schedules stay held
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="before capturing"), torch.cuda.graph(graph):
        stage.attention(q, k, v)
    # The refusal came before any launch: the stream is usable and the next call runs.
    torch.testing.assert_close(stage.attention(q, k, v), stage.attention(q, k, v))
