"""Instruments of the GAN lab: a critic with a non-constant known gradient that records
where it is evaluated, a generator whose output ignores its noise, SGD optimisers, and
read-outs of parameters and of a penalty's gradient w.r.t. the critic's parameters."""

import torch
from torch import nn

__all__ = ["QuadraticCritic", "ConstantGenerator", "sgd", "parameters_of", "penalty_gradients"]

_MAX_RECORDS = 64


class QuadraticCritic(nn.Module):
    """``f(x) = 0.5 * sum(a * x^2) + w.x + b`` per row; input gradient ``a * x + w``.

    Every batch it is called on is recorded (detached) in ``inputs``: the grader reads
    where the gradient penalty was evaluated.
    """

    def __init__(self, a, w, b=0.0):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a).reshape(-1).clone())
        self.w = nn.Parameter(torch.as_tensor(w).reshape(-1).clone().to(self.a.dtype))
        self.b = nn.Parameter(torch.as_tensor(float(b), dtype=self.a.dtype))
        self.inputs = []

    def forward(self, x):
        if len(self.inputs) < _MAX_RECORDS:
            self.inputs.append(x.detach().clone())
        flat = x.flatten(1).to(self.a.dtype)
        return 0.5 * (self.a * flat * flat).sum(1) + flat @ self.w + self.b


class ConstantGenerator(nn.Module):
    """``G(z)``: every row equals the parameter ``theta`` (shape (1, C, H, W)), whatever z."""

    def __init__(self, theta, latent_dim=2):
        super().__init__()
        self.theta = nn.Parameter(torch.as_tensor(theta).clone())
        self.latent_dim = int(latent_dim)

    def forward(self, z):
        return self.theta.expand(z.shape[0], *self.theta.shape[1:])


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
