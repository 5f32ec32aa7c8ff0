"""Instruments of the flow lab: the autograd Jacobian of a student's transform.

The grader cross-checks what these return with its own central finite differences, so
an instrument that the student's code fooled (a monkey-patched autograd) is caught.
"""

import torch
from torch import nn

__all__ = ["Jacobian"]


class Jacobian(nn.Module):
    """``Jacobian(flow, method="forward")(x) -> J (B, D_out, D_in)`` of the first output.

    Row i of example b is the gradient of ``out[b, i]`` with respect to ``x[b]``: one
    backward pass per output dimension with a one-hot cotangent summed over the batch
    (exact when rows do not interact; the grader's finite differences check that too).
    """

    def __init__(self, flow, method="forward"):
        super().__init__()
        self.flow = flow
        self.method = str(method)

    def forward(self, x):
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = getattr(self.flow, self.method)(x)
            y = out[0] if isinstance(out, (tuple, list)) else out
            rows = []
            for i in range(y.shape[1]):
                cot = torch.zeros_like(y)
                cot[:, i] = 1.0
                (g,) = torch.autograd.grad(y, x, grad_outputs=cot, retain_graph=True,
                                           allow_unused=True)
                rows.append(torch.zeros_like(x) if g is None else g)
        return torch.stack(rows, 1).detach()
