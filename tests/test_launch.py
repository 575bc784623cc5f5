"""common.launch.Launcher: which calls reuse a compiled kernel, and what its launcher is given.

A stand-in JIT kernel records when Triton's dispatch would run (a compile or a cache lookup) and
a stand-in compiled kernel records each direct launch, so this runs on the CPU machine too."""

import inspect
import types

import pytest
import torch
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.runtime.jit import JITFunction

from common import launch


class Compiled:
    """A compiled kernel: ``compiled[grid](*values)`` launches."""

    def __init__(self):
        self.launches = []

    def __getitem__(self, grid):
        return lambda *values: self.launches.append((grid, values))


class FakeJIT(JITFunction):
    """kernel(X, N, scale, FLAG: constexpr, MODE: constexpr = 7) whose dispatch is recorded."""

    def __init__(self):  # no Triton function behind it
        def kernel(X, N, scale, FLAG, MODE=7):
            pass

        self.params = [
            types.SimpleNamespace(name=p.name, default=p.default)
            for p in inspect.signature(kernel).parameters.values()
        ]
        self.dispatched = []

    def __getitem__(self, grid):
        def dispatch(*args, **kwargs):
            self.dispatched.append((grid, args, kwargs))
            return Compiled()

        return dispatch


@pytest.fixture
def fake(monkeypatch):
    device = types.SimpleNamespace(active=types.SimpleNamespace(get_current_device=lambda: 0))
    monkeypatch.setattr(launch, "driver", device)
    return FakeJIT()


def test_a_repeat_call_key_goes_straight_to_the_compiled_kernel_with_every_parameter(fake):
    launcher = launch.Launcher(fake)
    x = torch.randn(64)
    first = launcher[(3,)](x, 10, 0.5, FLAG=True, num_warps=4)
    assert len(fake.dispatched) == 1 and first.launches == []
    y = torch.randn(64)  # another aligned tensor, another scale: the same key
    again = launcher[(5, 2)](y, 10, 0.25, FLAG=True, num_warps=4)
    assert again is first and len(fake.dispatched) == 1
    # every parameter in order, the unpassed constexpr at its default; the grid made 3-D
    assert first.launches == [((5, 2, 1), (y, 10, 0.25, True, 7))]


@pytest.mark.parametrize(
    "change",
    [
        lambda x: ((x, 11, 0.5), {"FLAG": True}),  # an int's value
        lambda x: ((x[1:], 10, 0.5), {"FLAG": True}),  # a pointer 4 bytes off 16-byte alignment
        lambda x: ((x.half(), 10, 0.5), {"FLAG": True}),  # a dtype
        lambda x: ((x, True, 0.5), {"FLAG": True}),  # a bool where an int was
        lambda x: ((x, 10, 0.5), {"FLAG": False}),  # a constexpr
        lambda x: ((x, 10, 0.5), {"FLAG": True, "MODE": 8}),  # a defaulted constexpr passed
        lambda x: ((x, 10, 0.5), {"FLAG": True, "num_warps": 8}),  # an option
    ],
)
def test_anything_triton_specialises_on_takes_the_full_dispatch_again(fake, change):
    launcher = launch.Launcher(fake)
    x = torch.randn(64)
    launcher[(1,)](x, 10, 0.5, FLAG=True)
    args, kwargs = change(x)
    launcher[(1,)](*args, **kwargs)
    assert len(fake.dispatched) == 2


def test_a_bool_and_an_int_of_the_same_value_get_different_keys(fake):
    launcher = launch.Launcher(fake)
    x = torch.randn(64)
    launcher[(1,)](x, 1, 0.5, FLAG=True)
    launcher[(1,)](x, True, 0.5, FLAG=True)  # 1 == True in Python; Triton types them apart
    assert len(fake.dispatched) == 2


def descriptor(t, block):
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16)
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block, layout)


def test_a_descriptor_is_keyed_by_its_tile_not_its_tensor(fake):
    launcher = launch.Launcher(fake)
    a, b = (torch.randn(128, 64).bfloat16() for _ in range(2))
    launcher[(1,)](descriptor(a, [64, 64]), 10, 0.5, FLAG=True)
    launcher[(1,)](descriptor(b, [64, 64]), 10, 0.5, FLAG=True)  # another tensor: same kernel
    assert len(fake.dispatched) == 1
    launcher[(1,)](descriptor(b, [128, 64]), 10, 0.5, FLAG=True)  # another box: another kernel
    assert len(fake.dispatched) == 2


def test_a_kernel_that_is_not_a_jit_function_is_dispatched_every_time(fake):
    calls = []

    class Interpreted:  # what triton.jit returns under TRITON_INTERPRET=1
        def __getitem__(self, grid):
            return lambda *a, **kw: calls.append((grid, a, kw))

    launcher = launch.Launcher(Interpreted())
    x = torch.randn(64)
    for _ in range(3):
        launcher[(2,)](x, 10, 0.5, FLAG=True)
    assert calls == [((2,), (x, 10, 0.5), {"FLAG": True})] * 3
