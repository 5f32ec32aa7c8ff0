"""Pure parts of the backward_pass and test_accuracy checks (no kernel)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from grader.checks import REGISTRY
from grader.checks.classifier import accuracy_of
from grader.scoring import linear_credit
from grader.checks.gradients import (elementwise_rel_error, judge_gradients, normwise_rel_error,
                                     reference_gradients)

from conftest import reference_module

REPO = Path(__file__).resolve().parent.parent


R = reference_module("backprop")


def test_kinds_are_registered() -> None:
    assert {"backward_pass", "test_accuracy"} <= set(REGISTRY)
    assert {"forward", "cotangent", "returns", "inputs"} <= REGISTRY["backward_pass"].required


def test_elementwise_rel_error_is_the_uva_formula() -> None:
    a, b = torch.tensor([1.0, 0.0, 3.0]), torch.tensor([1.0, 0.0, 1.0])
    err, idx = elementwise_rel_error(a, b)
    assert err == pytest.approx(0.5) and idx == (2,)
    assert elementwise_rel_error(torch.zeros(3), torch.zeros(3))[0] == 0.0
    assert elementwise_rel_error(torch.tensor([1e-12]), torch.tensor([0.0]))[0] == \
        pytest.approx(1e-4)
    assert math.isinf(elementwise_rel_error(torch.tensor([math.nan]), torch.tensor([1.0]))[0])


def test_normwise_rel_error_ignores_cancellation_near_zero() -> None:
    a, b = torch.tensor([10.0, 1e-7]), torch.tensor([10.0, 0.0])
    assert normwise_rel_error(a, b)[0] < 1e-8
    assert elementwise_rel_error(a, b)[0] == pytest.approx(1.0)
    assert math.isinf(normwise_rel_error(torch.tensor([math.inf]), torch.tensor([1.0]))[0])


class LyingLinear(torch.autograd.Function):
    """linear_forward whose backward halves grad_W: a reference with a wrong autograd."""

    @staticmethod
    def forward(ctx, x, w, b):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x, w)
        return x @ w.T + b

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        x, w = ctx.saved_tensors
        return g @ w, 0.5 * g.T @ x, g.sum(0)


@pytest.mark.parametrize("dtype", [torch.float64])
def test_reference_gradients_of_linear_agree_with_closed_form(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, generator=gen, dtype=dtype) for s in ((4, 3), (2, 3), (2,)))
    g = torch.randn(4, 2, generator=gen, dtype=dtype)
    auto = reference_gradients(R.linear_forward, [x, w, b], [0, 1, 2], g)
    for got, want in zip(auto, R.linear_backward(g, x, w)):
        assert torch.allclose(got, want, atol=1e-12)
    # a forward whose autograd the differences refute is a grader error, not a verdict
    def lying(x, w, b):
        return LyingLinear.apply(x, w, b)

    with pytest.raises(RuntimeError, match="refuted by finite differences"):
        reference_gradients(lying, [x, w, b], [0, 1, 2], g)
    # the bugs of the lab's examples are far outside the tolerance
    assert elementwise_rel_error(x.T @ g, auto[1].T)[0] < 1e-12        # transposed = its .T
    assert elementwise_rel_error(R.linear_backward(g, x, w)[1] * 2, auto[1])[0] > 0.3


def test_reference_softmax_is_stable_and_its_gradient_is_autograds() -> None:
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=torch.float64)
    targets = torch.tensor([1, 2])
    loss, grad = R.softmax_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx((2e4 + math.log(3)) / 2)
    leaf = logits.clone().requires_grad_(True)
    R.cross_entropy_loss(leaf, targets).backward()
    assert torch.allclose(grad, leaf.grad, atol=1e-15)


def test_linear_credit_and_accuracy() -> None:
    assert linear_credit(0.95, 0.90, 0.96) == pytest.approx(5 / 6)
    assert linear_credit(0.99, 0.90, 0.96) == 1.0
    assert linear_credit(0.50, 0.90, 0.96) == 0.0
    assert linear_credit(math.nan, 0.90, 0.96) == 0.0
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    acc, per_class = accuracy_of(logits, torch.tensor([0, 1, 1, 1]))
    assert acc == 0.75 and per_class == [1.0, pytest.approx(2 / 3)]


def _float32_buffers_backward(g, x, w):  # type: ignore[no-untyped-def]
    """A correct linear_backward (LABS.md: float32): per-example sums into torch.zeros
    buffers (float32 whatever the inputs), cast back to the input dtype at the end."""
    gx, gw, gb = torch.zeros(x.shape), torch.zeros(w.shape), torch.zeros(w.shape[0])
    for n in range(x.shape[0]):
        gx[n] = g[n] @ w
        gw += torch.outer(g[n], x[n])
        gb += g[n]
    return gx.to(x.dtype), gw.to(w.dtype), gb.to(w.dtype)


def test_judge_gradients_judges_float32_accuracy_as_float32_code() -> None:
    def f32(v):  # type: ignore[no-untyped-def]
        return torch.tensor(v, dtype=torch.float32).double()

    # grad_W[0, 0] = (1/3) * 3 - 1 cancels to 3e-8 in float64, to 0 in float32
    g, x, w = f32([[1 / 3], [1.0]]), f32([[3.0, 2.0], [-1.0, 5.0]]), f32([[0.5, -0.25]])
    auto = reference_gradients(R.linear_forward, [x, w, torch.zeros(1, dtype=torch.float64)],
                               [0, 1, 2], g)
    names = ["x", "W", "b"]

    def run(precision: str, bug: float = 1.0):  # type: ignore[no-untyped-def]
        dtype = torch.float64 if precision == "float64" else torch.float32
        gx, gw, gb = _float32_buffers_backward(g.to(dtype), x.to(dtype), w.to(dtype))
        return gx, gw, gb * bug

    float64_answer = run("float64")
    assert float64_answer[1].dtype == torch.float64
    assert elementwise_rel_error(float64_answer[1], auto[1])[0] == pytest.approx(1.0)
    assert judge_gradients(run, auto, names, "float64", 1e-5, 1e-4)[1] is None
    # a real bug still fails, and the finding names its output, not the rounding of grad_W
    _, why = judge_gradients(lambda p: run(p, bug=0.5), auto, names, "float64", 1e-5, 1e-4)
    assert why is not None and "w.r.t. `b`" in why and "norm-wise" in why
    _, why = judge_gradients(lambda p: (run(p)[0], 2 * run(p)[1], run(p)[2]), auto, names,
                             "float64", 1e-5, 1e-4)
    assert why is not None and "w.r.t. `W`" in why and "element-wise" in why
