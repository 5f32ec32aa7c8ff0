"""Trusted reference of the autoregressive lab (LABS.md section 2).

Recurrent cells with exactly the parameters and gate layouts of ``torch.nn.LSTMCell``
and ``torch.nn.GRUCell``, a causal (optionally dilated, optionally strictly causal) 1-D
convolution, multi-head causal self-attention, and ``PixelAR``: a MADE-style masked MLP
over the 64 binary pixels in raster order. Every module follows the dtype of its
inputs and parameters (``.double()`` works). Only torch is imported.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LSTMCell", "GRUCell", "CausalConv1d", "CausalSelfAttention", "MaskedLinear",
           "PixelAR", "PIXELS", "HIDDEN"]

PIXELS = 64
HIDDEN = 96


class LSTMCell(nn.Module):
    """One LSTM step; parameters and gate order (i, f, g, o) as ``torch.nn.LSTMCell``."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x, state=None):
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class GRUCell(nn.Module):
    """One GRU step; parameters and gate order (r, z, n) as ``torch.nn.GRUCell``.

    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): the reset gate multiplies b_hn too.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x, h=None):
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        xr, xz, xn = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)
        hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class CausalConv1d(nn.Module):
    """(B, C, T) -> (B, Co, T); output t sees x[t - j*dilation], j = 0..k-1 (shifted by one
    step, i.e. strictly earlier inputs only, when ``include_current=False``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 include_current: bool = True):
        super().__init__()
        self.include_current = include_current
        self.shift = 0 if include_current else 1
        self.left = (kernel_size - 1) * dilation + self.shift
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x):
        T = x.shape[-1]
        return self.conv(F.pad(x, (self.left, 0)))[..., :T]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions <= t."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D // H)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, D)
        return self.out(y)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (not saved)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()), persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class PixelAR(nn.Module):
    """MADE over the 64 pixels in raster order: logit i depends on x_0 .. x_{i-1} only.

    Input degrees 1..64, hidden degrees cycle through 1..63, a hidden unit of degree m
    sees inputs of degree <= m, output i (degree i + 1) sees hidden units of degree <= i.
    A masked direct input-to-output connection (strictly lower triangular) is added.
    """

    def __init__(self, hidden: int = HIDDEN):
        super().__init__()
        d_in = torch.arange(1, PIXELS + 1)
        d_h = torch.arange(hidden) % (PIXELS - 1) + 1
        self.fc1 = MaskedLinear(PIXELS, hidden, (d_h[:, None] >= d_in[None, :]))
        self.fc2 = MaskedLinear(hidden, hidden, (d_h[:, None] >= d_h[None, :]))
        self.fc3 = MaskedLinear(hidden, PIXELS, (d_in[:, None] > d_h[None, :]))
        self.direct = MaskedLinear(PIXELS, PIXELS, (d_in[:, None] > d_in[None, :]))

    def forward(self, x):
        flat = x.reshape(x.shape[0], PIXELS).to(self.fc1.weight.dtype)
        h = torch.relu(self.fc1(flat))
        h = torch.relu(self.fc2(h))
        return (self.fc3(h) + self.direct(flat)).reshape(-1, 1, 8, 8)

    def log_prob(self, x):
        """log p(x) in nats, (B,): the Bernoulli log-likelihood of x under its own logits."""
        logits = self(x)
        nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
        return -nll.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int):
        """n binary images (n, 1, 8, 8), pixel by pixel in raster order."""
        p = self.fc1.weight
        x = torch.zeros(n, PIXELS, dtype=p.dtype, device=p.device)
        for i in range(PIXELS):
            logits = self(x).reshape(n, PIXELS)
            x[:, i] = torch.bernoulli(torch.sigmoid(logits[:, i]))
        return x.reshape(n, 1, 8, 8)
