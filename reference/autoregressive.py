"""Reference solution of the autoregressive lab (trusted; never sent to a student).

Generated from reference/autoregressive.ipynb by `grader build autoregressive`: edit the notebook, not this file.
"""

import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from grader.data import digits
TRAIN = True
SEED = 0
DEVICE = "cpu"


class LSTMCell(nn.Module):
    """LSTMCell(input_size, hidden_size).

    forward(x (B, I), state=None or (h (B, H), c (B, H))) -> (h, c), each (B, H).
    """

    def __init__(self, input_size, hidden_size):
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
    """GRUCell(input_size, hidden_size).   forward(x (B, I), h=None or (B, H)) -> h (B, H)."""

    def __init__(self, input_size, hidden_size):
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
    """CausalConv1d(in_channels, out_channels, kernel_size, dilation=1, include_current=True)."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, include_current=True):
        super().__init__()
        # Output t sees x[t - j*dilation], j = 0..k-1 (shifted by one step, i.e. strictly
        # earlier inputs only, when include_current=False): pad on the left only.
        self.include_current = include_current
        self.shift = 0 if include_current else 1
        self.left = (kernel_size - 1) * dilation + self.shift
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x):
        T = x.shape[-1]
        return self.conv(F.pad(x, (self.left, 0)))[..., :T]


class CausalSelfAttention(nn.Module):
    """CausalSelfAttention(d_model, n_heads)."""

    def __init__(self, d_model, n_heads):
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


class PixelAR(nn.Module):
    """forward(x (B, 1, 8, 8) in {0, 1}) -> logits (B, 1, 8, 8); logit i = logit p(x_i = 1 | x_<i).

    log_prob(x) -> (B,) log p(x) in nats.   sample(n) -> (n, 1, 8, 8) binary images (0.0 / 1.0).
    """

    def __init__(self):
        super().__init__()
        # MADE over the 64 pixels in raster order: logit i depends on x_0 .. x_{i-1} only.
        # Input degrees 1..64, hidden degrees cycle through 1..63, a hidden unit of degree m
        # sees inputs of degree <= m, output i (degree i + 1) sees hidden units of degree <= i.
        # A masked direct input-to-output connection (strictly lower triangular) is added.
        # Each linear layer's weight is multiplied by a fixed 0/1 mask (a buffer, not saved).
        hidden = 96
        d_in = torch.arange(1, 65)
        d_h = torch.arange(hidden) % 63 + 1
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 64)
        self.direct = nn.Linear(64, 64)
        masks = {"fc1": d_h[:, None] >= d_in[None, :], "fc2": d_h[:, None] >= d_h[None, :],
                 "fc3": d_in[:, None] > d_h[None, :], "direct": d_in[:, None] > d_in[None, :]}
        for name, mask in masks.items():
            self.register_buffer(f"{name}_mask", mask.to(torch.get_default_dtype()),
                                 persistent=False)

    def forward(self, x):
        def masked(name, v):
            layer = getattr(self, name)
            return F.linear(v, layer.weight * getattr(self, f"{name}_mask"), layer.bias)

        flat = x.reshape(x.shape[0], 64).to(self.fc1.weight.dtype)
        h = torch.relu(masked("fc1", flat))
        h = torch.relu(masked("fc2", h))
        return (masked("fc3", h) + masked("direct", flat)).reshape(-1, 1, 8, 8)

    def log_prob(self, x):
        """log p(x) in nats, (B,): the Bernoulli log-likelihood of x under its own logits."""
        logits = self(x)
        nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
        return -nll.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n):
        """n binary images (n, 1, 8, 8), pixel by pixel in raster order."""
        p = self.fc1.weight
        x = torch.zeros(n, 64, dtype=p.dtype, device=p.device)
        for i in range(64):
            logits = self(x).reshape(n, 64)
            x[:, i] = torch.bernoulli(torch.sigmoid(logits[:, i]))
        return x.reshape(n, 1, 8, 8)


EPOCHS = 100
BATCH_SIZE = 64
LR = 3e-3
