"""Instruments of the GAN lab: a critic with a non-constant known gradient that records
where it is evaluated, a critic whose input gradient has norm 1 whatever its parameters,
a generator whose output ignores its noise, SGD optimisers, and read-outs of parameters
and of a penalty's gradient w.r.t. the critic's parameters."""

import torch
from torch import nn

__all__ = ["QuadraticCritic", "UnitCritic", "ConstantGenerator", "sgd", "parameters_of",
           "penalty_gradients"]

_MAX_ROWS = 1024


class QuadraticCritic(nn.Module):
    """``f(x) = 0.5 * sum(a * x^2) + w.x + b`` per row; input gradient ``a * x + w``.

    Every batch it is called on is recorded (detached) in ``inputs``, up to ``_MAX_ROWS``
    rows in all: the grader reads where the gradient penalty was evaluated, whether the
    student called it once on the batch, once per example or in any other grouping.
    """

    def __init__(self, a, w, b=0.0):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a).reshape(-1).clone())
        self.w = nn.Parameter(torch.as_tensor(w).reshape(-1).clone().to(self.a.dtype))
        self.b = nn.Parameter(torch.as_tensor(float(b), dtype=self.a.dtype))
        self.inputs = []
        self._rows = 0

    def forward(self, x):
        rows = x.shape[0] if x.dim() else 1
        if self._rows + rows <= _MAX_ROWS:
            self.inputs.append(x.detach().clone())
            self._rows += rows
        flat = x.flatten(1).to(self.a.dtype)
        return 0.5 * (self.a * flat * flat).sum(1) + flat @ self.w + self.b


class UnitCritic(nn.Module):
    """``f(x) = x.flatten(1) @ (w / ||w||) + b``: its input gradient has norm 1 for every w.

    A gradient penalty ``(||grad_x f|| - 1)^2`` is then zero, and so is its gradient, at
    every step: a ``train_step`` that adds one to the discriminator's loss steps exactly as
    one that does not, also after D's first update has changed ``w``.
    """

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w).reshape(-1).clone())
        self.b = nn.Parameter(torch.as_tensor(float(b), dtype=self.w.dtype))

    def forward(self, x):
        return x.flatten(1).to(self.w.dtype) @ (self.w / self.w.norm()) + self.b


class ConstantGenerator(nn.Module):
    """``G(z)``: every row equals the parameter ``theta`` (shape (1, C, H, W)), whatever z.

    ``sample(n)`` is ``G`` on fresh noise without a graph, like the template's
    ``@torch.no_grad()`` sample: a ``train_step`` may take the D step's fakes from it.
    """

    def __init__(self, theta, latent_dim=2):
        super().__init__()
        self.theta = nn.Parameter(torch.as_tensor(theta).clone())
        self.latent_dim = int(latent_dim)

    def forward(self, z):
        # a fresh tensor (not a view of theta), as a real generator returns
        return self.theta.expand(z.shape[0], *self.theta.shape[1:]).clone()

    @torch.no_grad()
    def sample(self, n):
        return self(torch.randn(int(n), self.latent_dim, dtype=self.theta.dtype))


def sgd(module, lr):
    """Plain SGD (no momentum, no weight decay) over ``module``'s parameters."""
    return torch.optim.SGD(module.parameters(), lr=float(lr))


def parameters_of(module):
    """``{name: detached copy}`` of every parameter of ``module``."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def penalty_gradients(critic, penalty):
    """d(penalty)/d(critic.a, critic.w), or a reason why it has no graph to them."""
    if not isinstance(penalty, torch.Tensor) or penalty.numel() != 1:
        return {"error": f"the penalty is a {type(penalty).__name__}, not a one-element tensor"}
    if not penalty.requires_grad:
        return {"error": "the penalty carries no graph (requires_grad is False)"}
    grads = torch.autograd.grad(penalty.reshape(()), [critic.a, critic.w], allow_unused=True)
    if any(g is None for g in grads):
        return {"error": "no gradient reaches the critic's parameters"}
    return {"a": grads[0].detach().clone(), "w": grads[1].detach().clone()}
