"""Trusted reference of the backprop lab (LABS.md section 1).

Hand-written layers and their backward passes, a numerically stable softmax
cross-entropy, a convolution (wrapping ``F.conv2d``) and a small MLP classifier of
the 8x8 ``scaled`` digits. Every function follows the dtype of its inputs (float64
in, float64 out). The grader reads this file by path; it never enters the
student's kernel. Only torch is imported, so it can also run as a notebook cell.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["HIDDEN", "linear_forward", "linear_backward", "relu", "relu_backward",
           "softmax_cross_entropy", "cross_entropy_loss", "conv2d_forward", "MLP"]

HIDDEN = 128
CLASSES = 10


def linear_forward(x, W, b):
    """y = x W^T + b: x (B, I), W (O, I), b (O,) -> (B, O)."""
    return x @ W.T + b


def linear_backward(grad_out, x, W):
    """Gradients of <grad_out, linear_forward(x, W, b)>: (grad_x (B,I), grad_W (O,I), grad_b (O,)).

    grad_W and grad_b are summed over the batch.
    """
    return grad_out @ W, grad_out.T @ x, grad_out.sum(dim=0)


def relu(x):
    """max(x, 0), element-wise (the forward of ``relu_backward``)."""
    return torch.clamp(x, min=0)


def relu_backward(grad_out, x):
    """grad_out where x > 0, else 0 (any subgradient at exactly 0)."""
    return grad_out * (x > 0).to(grad_out.dtype)


def cross_entropy_loss(logits, targets):
    """Mean over the batch of -log softmax(logits)[target]: the forward of the loss alone."""
    return -(logits - torch.logsumexp(logits, dim=1, keepdim=True)).gather(
        1, targets.view(-1, 1)).mean()


def softmax_cross_entropy(logits, targets):
    """(loss, grad_logits): mean cross-entropy over the batch and its gradient.

    logits (B, C) floats, targets (B,) int64 in [0, C). Stable at logits of +-1e4: the
    row maximum is subtracted before exponentiating (log-sum-exp).
    """
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    batch = logits.shape[0]
    loss = -log_probs.gather(1, targets.view(-1, 1)).sum() / batch
    grad = torch.exp(log_probs)
    grad[torch.arange(batch), targets] -= 1.0
    return loss, grad / batch


def conv2d_forward(x, w, b, stride=1, padding=0):
    """Cross-correlation as ``F.conv2d``: x (B,Ci,H,W), w (Co,Ci,k,k), b (Co,) -> (B,Co,H',W')."""
    return F.conv2d(x, w, b, stride=int(stride), padding=int(padding))


class MLP(nn.Module):
    """(B, 1, 8, 8) scaled digits -> logits (B, 10): 64 -> 128 -> 128 -> 10, ReLU."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))

    def forward(self, x):
        return self.net(x)
