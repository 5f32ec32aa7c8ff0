"""Reference solution of the backprop lab (trusted; never sent to a student).

Generated from reference/backprop.ipynb by `grader build backprop`: edit the notebook, not this file.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from grader.data import digit_labels, digits


def relu(x):
    """max(x, 0), element-wise (the forward of ``relu_backward``)."""
    return torch.clamp(x, min=0)


def cross_entropy_loss(logits, targets):
    """Mean over the batch of -log softmax(logits)[target]: the forward of the loss alone."""
    return -(logits - torch.logsumexp(logits, dim=1, keepdim=True)).gather(
        1, targets.view(-1, 1)).mean()


TRAIN = True
SEED = 0
DEVICE = "cpu"
HIDDEN = 128


def linear_forward(x, W, b):
    """y = x W^T + b.

    x (B, I), W (O, I), b (O,)  ->  y (B, O)
    """
    return x @ W.T + b


def linear_backward(grad_out, x, W):
    """Backward pass of linear_forward.

    grad_out (B, O) = dL/dy, x (B, I), W (O, I)
        -> (grad_x (B, I), grad_W (O, I), grad_b (O,)); grad_W and grad_b summed over the batch.
    """
    return grad_out @ W, grad_out.T @ x, grad_out.sum(dim=0)


def relu_backward(grad_out, x):
    """Backward pass of relu(x) = max(x, 0): grad_out and x of the same shape -> grad_x."""
    return grad_out * (x > 0).to(grad_out.dtype)


def softmax_cross_entropy(logits, targets):
    """Mean softmax cross-entropy over the batch, and its gradient w.r.t. the logits.

    logits (B, C) floats, targets (B,) int64 in [0, C)
        -> (loss: 0-d tensor, the MEAN over the batch; grad_logits (B, C): d loss / d logits)
    """
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    batch = logits.shape[0]
    loss = -log_probs.gather(1, targets.view(-1, 1)).sum() / batch
    grad = torch.exp(log_probs)
    grad[torch.arange(batch), targets] -= 1.0
    return loss, grad / batch


def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-d convolution (cross-correlation, as torch.nn.functional.conv2d), zero padding.

    x (B, Ci, H, W), w (Co, Ci, k, k), b (Co,), stride and padding ints
        -> (B, Co, H', W'), H' = (H + 2 padding - k) // stride + 1, same for W'.
    """
    batch, _, height, width = x.shape
    out_ch, _, k, _ = w.shape
    if padding > 0:
        padded = x.new_zeros(batch, x.shape[1], height + 2 * padding, width + 2 * padding)
        padded[:, :, padding:padding + height, padding:padding + width] = x
        x = padded
    out_h = (x.shape[2] - k) // stride + 1
    out_w = (x.shape[3] - k) // stride + 1
    out = x.new_zeros(batch, out_ch, out_h, out_w)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = torch.einsum("bcuv,ocuv->bo", patch, w) + b
    return out


class MLP(nn.Module):
    """(B, 1, 8, 8) scaled digits -> logits (B, 10).  MLP() must build with no arguments."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


EPOCHS = 30
BATCH_SIZE = 64
LR = 0.1
MOMENTUM = 0.9
