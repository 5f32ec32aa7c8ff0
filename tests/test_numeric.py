"""The one finite-difference comparison every check goes through (grader/checks/numeric.py).

A correct program must never be blamed for a kink inside the grader's step (ReLU, abs,
clamp, max: LABS.md allows any subgradient there), and a wrong or detached derivative must
still be caught, with the numbers.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from grader.checks.numeric import central_differences, gradient_mismatch, jacobian_mismatch

STEP, RTOL = 1e-4, 1e-4


def relu_mlp(d: int, hidden: int = 64, seed: int = 0):
    """A coupling-network-like map R^d -> R^d with two ReLU layers, parameters N(0, 0.3^2)."""
    gen = torch.Generator().manual_seed(seed)
    w1, w2, w3 = (torch.randn(s, generator=gen, dtype=torch.float64) * 0.3
                  for s in ((hidden, d), (hidden, hidden), (d, hidden)))
    b1, b2 = (torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.3 for _ in range(2))

    def f(x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x @ w1.T + b1)
        return x * torch.exp(torch.tanh(torch.relu(h @ w2.T + b2) @ w3.T)) + h[..., :d]

    return f, w1, b1


def jacobian(f, x: torch.Tensor) -> torch.Tensor:
    return vmap(jacrev(f))(x)


def judge(f, x: torch.Tensor, claim=None):
    claim = claim or (lambda rows: jacobian(f, rows))
    return jacobian_mismatch(f, claim, x, claim(x), step=STEP, rtol=RTOL, seed=0)


def test_a_relu_network_is_never_blamed_over_thousands_of_draws() -> None:
    f, _, _ = relu_mlp(4)
    x = torch.empty(4000, 4, dtype=torch.float64).uniform_(-10, 10,
                                                            generator=torch.Generator()
                                                            .manual_seed(1))
    assert judge(f, x) is None


def test_a_relu_network_exactly_at_and_next_to_its_kinks_is_never_blamed() -> None:
    f, w1, b1 = relu_mlp(4)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.empty(2000, 4, dtype=torch.float64).uniform_(-10, 10, generator=gen)
    unit = torch.randint(0, w1.shape[0], (2000,), generator=gen)
    w, b = w1[unit], b1[unit]
    on_kink = x0 - ((x0 * w).sum(1, keepdim=True) + b[:, None]) / (w * w).sum(1, keepdim=True) * w
    assert float(((on_kink * w).sum(1) + b).abs().max()) < 1e-9      # a ReLU switches here
    offsets = torch.empty(2000, 1, dtype=torch.float64).uniform_(-STEP, STEP, generator=gen)
    beside = on_kink + offsets * w / w.norm(dim=1, keepdim=True)     # inside the step
    assert judge(f, on_kink) is None
    assert judge(f, beside) is None
    assert judge(f, torch.zeros(8, 4, dtype=torch.float64)) is None  # where hypothesis shrinks


def test_abs_and_clamp_at_and_near_their_kinks_are_never_blamed() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[..., 0].abs() * x[..., 1], x[..., 1].clamp(-1.0, 1.0),
                            torch.maximum(x[..., 0], x[..., 1])], -1)

    kinks = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [0.0, -1.0],
                          [3e-5, 1.0 - 2e-5], [-7e-5, -1.0 + 9e-5]], dtype=torch.float64)
    assert judge(f, kinks) is None


def test_a_detached_branch_is_caught_with_the_numbers() -> None:
    f, _, _ = relu_mlp(3)

    def detached(x: torch.Tensor) -> torch.Tensor:
        return f(x).detach() + 0 * x                      # autograd sees nothing of f

    x = torch.randn(5, 3, dtype=torch.float64)
    found = jacobian_mismatch(f, lambda rows: jacobian(detached, rows), x, jacobian(detached, x),
                              step=STEP, rtol=RTOL)
    assert found is not None and found.missing
    assert "no gradient reaches the input" in found.describe()


def test_a_wrong_derivative_is_caught_and_not_called_detached() -> None:
    class Doubled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(x)
            return torch.tanh(x)

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            (x,) = ctx.saved_tensors
            return 2 * g * (1 - torch.tanh(x) ** 2)        # twice the true derivative

    def claim(rows: torch.Tensor) -> torch.Tensor:
        leaf = rows.clone().requires_grad_(True)
        cols = [torch.autograd.grad(Doubled.apply(leaf)[:, i].sum(), leaf)[0]
                for i in range(rows.shape[1])]
        return torch.stack(cols, 1)

    x = torch.randn(6, 3, dtype=torch.float64)
    found = jacobian_mismatch(torch.tanh, claim, x, claim(x), step=STEP, rtol=RTOL)
    assert found is not None and not found.missing
    assert found.claimed == __import__("pytest").approx(2 * found.numeric, rel=1e-6)
    text = found.describe("the autograd Jacobian")
    assert "differs from the grader's finite differences" in text and "nearby point" in text


def test_gradient_mismatch_of_a_relu_at_zero_accepts_either_subgradient() -> None:
    x = torch.tensor([[0.0, -1.0, 2.0]], dtype=torch.float64)
    cot = torch.ones(1, 3, dtype=torch.float64)

    def f(xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.relu(xs[0])

    for sub in (0.0, 0.5, 1.0):                      # autograd's 0, the central 0.5, the right 1
        grad = torch.tensor([[sub, 0.0, 1.0]], dtype=torch.float64)
        assert gradient_mismatch(f, [x], 0, cot, grad, lambda xs: (xs[0] > 0).double(),
                                 step=1e-6, rtol=1e-5) is None
    wrong = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)      # slope 1 at x = -1
    found = gradient_mismatch(f, [x], 0, cot, wrong, lambda xs: wrong, step=1e-6, rtol=1e-5)
    assert found is not None and found.index == (0, 0, 1)
    assert torch.allclose(central_differences(f, [x + 0.5], 0, cot, 1e-6),
                          torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
