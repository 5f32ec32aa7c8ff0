"""Build the example submissions ``assignments/autoregressive/examples/<name>/autoregressive.ipynb``.

Run from the repository root:  .venv/bin/python assignments/autoregressive/make_examples.py

Each example is the template with its solution cells filled in. ``correct`` is a plain
solution; ``different`` is correct but written differently everywhere the contract allows;
each ``bug_*`` is ``correct`` with exactly one cell changed (see examples/README.md). The
checkpoints ``pixel_ar.pt`` are written by ``make_checkpoints.py``, which runs each
notebook's own training cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

LSTM = '''class LSTMCell(nn.Module):
    """LSTMCell(input_size, hidden_size); gates (i, f, g, o) as torch.nn.LSTMCell."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))

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
'''

GRU = '''class GRUCell(nn.Module):
    """GRUCell(input_size, hidden_size); gates (r, z, n) as torch.nn.GRUCell."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size).uniform_(-bound, bound))

    def forward(self, x, h=None):
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        xr, xz, xn = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)
        hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h
'''

CONV = '''class CausalConv1d(nn.Module):
    """Left-padded Conv1d; include_current=False shifts the input one step to the right."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, include_current=True):
        super().__init__()
        self.shift = 0 if include_current else 1
        self.left = (kernel_size - 1) * dilation + self.shift
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x):
        T = x.shape[-1]
        return self.conv(F.pad(x, (self.left, 0)))[..., :T]
'''

ATTENTION = '''class CausalSelfAttention(nn.Module):
    """Multi-head attention; position t attends to positions <= t."""

    def __init__(self, d_model, n_heads):
        super().__init__()
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
        return self.out((weights @ v).transpose(1, 2).reshape(B, T, D))
'''

PIXEL_AR = '''class MaskedLinear(nn.Linear):
    def __init__(self, n_in, n_out, mask):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class PixelAR(nn.Module):
    """MADE: input degrees 1..64, hidden degrees cycling 1..63; logit i sees pixels < i."""

    def __init__(self, hidden=96):
        super().__init__()
        d_in = torch.arange(1, 65)
        d_h = torch.arange(hidden) % 63 + 1
        self.fc1 = MaskedLinear(64, hidden, d_h[:, None] >= d_in[None, :])
        self.fc2 = MaskedLinear(hidden, hidden, d_h[:, None] >= d_h[None, :])
        self.fc3 = MaskedLinear(hidden, 64, d_in[:, None] > d_h[None, :])
        self.direct = MaskedLinear(64, 64, d_in[:, None] > d_in[None, :])

    def forward(self, x):
        flat = x.reshape(x.shape[0], 64).to(self.fc1.weight.dtype)
        h = torch.relu(self.fc2(torch.relu(self.fc1(flat))))
        return (self.fc3(h) + self.direct(flat)).reshape(-1, 1, 8, 8)

    def log_prob(self, x):
        logits = self(x)
        x = x.to(logits.dtype)
        return (x * logits - F.softplus(logits)).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n):
        x = self.fc1.weight.new_zeros(n, 64)
        for i in range(64):
            logits = self(x).reshape(n, 64)
            x[:, i] = torch.bernoulli(torch.sigmoid(logits[:, i]))
        return x.reshape(n, 1, 8, 8)
'''

CORRECT = {"lstm": LSTM, "gru": GRU, "causal_conv": CONV, "attention": ATTENTION,
           "pixel_ar": PIXEL_AR}

DIFFERENT = {
    "lstm": '''class LSTMCell(nn.Module):
    """Per-gate matrices taken as views of the stacked parameters; addmm; state as a tuple."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.1)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))

    def forward(self, x, state=None):
        H = self.hidden_size
        h, c = state if state is not None else (torch.zeros_like(x[:, :1].expand(-1, H)),) * 2
        pre = torch.addmm(self.bias_ih + self.bias_hh, x, self.weight_ih.t())
        pre = pre + F.linear(h, self.weight_hh)
        i = pre[:, 0 * H:1 * H].sigmoid()
        f = pre[:, 1 * H:2 * H].sigmoid()
        g = pre[:, 2 * H:3 * H].tanh()
        o = pre[:, 3 * H:4 * H].sigmoid()
        c_new = torch.addcmul(i * g, f, c)
        return o * c_new.tanh(), c_new
''',
    "gru": '''class GRUCell(nn.Module):
    """Gate by gate with F.linear on slices of the stacked parameters."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(3 * hidden_size, input_size) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(3 * hidden_size, hidden_size) * 0.1)
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))

    def gate(self, x, h, k):
        H = self.hidden_size
        s = slice(k * H, (k + 1) * H)
        return (F.linear(x, self.weight_ih[s], self.bias_ih[s]),
                F.linear(h, self.weight_hh[s], self.bias_hh[s]))

    def forward(self, x, h=None):
        if h is None:
            h = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        r = torch.sigmoid(sum(self.gate(x, h, 0)))
        z = torch.sigmoid(sum(self.gate(x, h, 1)))
        xn, hn = self.gate(x, h, 2)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n)
''',
    "causal_conv": '''class CausalConv1d(nn.Module):
    """Explicit taps: y_t = b + sum_j W_j x_{t - j d}; include_current=False drops tap j = 0."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, include_current=True):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.first = 0 if include_current else 1
        taps = kernel_size if include_current else max(kernel_size - 1, 1)
        self.weight = nn.Parameter(torch.randn(taps, out_channels, in_channels) / (in_channels * taps) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x):
        T = x.shape[-1]
        y = self.bias[None, :, None].expand(x.shape[0], -1, T).clone()
        if self.first == 1 and self.kernel_size == 1:
            # a single strictly-past tap: the previous step
            return y + torch.einsum("oc,bct->bot", self.weight[0], F.pad(x, (1, 0))[..., :T])
        for n, j in enumerate(range(self.first, self.kernel_size)):
            shift = j * self.dilation
            past = F.pad(x, (shift, 0))[..., :T]
            y = y + torch.einsum("oc,bct->bot", self.weight[n], past)
        return y
''',
    "attention": '''class CausalSelfAttention(nn.Module):
    """torch's scaled_dot_product_attention with is_causal=True, separate q/k/v projections."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.h = n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)

    def split(self, t):
        B, T, D = t.shape
        return t.view(B, T, self.h, D // self.h).transpose(1, 2)

    def forward(self, x):
        B, T, D = x.shape
        y = F.scaled_dot_product_attention(self.split(self.q(x)), self.split(self.k(x)),
                                           self.split(self.v(x)), is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))
''',
    "pixel_ar": '''class MaskedConv2d(nn.Conv2d):
    """PixelCNN masked convolution: type A excludes the centre pixel, type B includes it."""

    def __init__(self, mask_type, c_in, c_out, k):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[:, :, k // 2 + 1:] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelAR(nn.Module):
    """A small PixelCNN (blind spot and all: it is still causal)."""

    def __init__(self, channels=32):
        super().__init__()
        self.net = nn.Sequential(
            MaskedConv2d("A", 1, channels, 5), nn.ReLU(),
            MaskedConv2d("B", channels, channels, 3), nn.ReLU(),
            MaskedConv2d("B", channels, channels, 3), nn.ReLU(),
            MaskedConv2d("B", channels, channels, 3), nn.ReLU(),
            nn.Conv2d(channels, 1, 1))

    def forward(self, x):
        return self.net(x.to(self.net[0].weight.dtype))

    def log_prob(self, x):
        logits = self(x)
        return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype),
                                                   reduction="none").sum(dim=(1, 2, 3))

    @torch.no_grad()
    def sample(self, n):
        w = self.net[0].weight
        x = torch.zeros(n, 1, 8, 8, dtype=w.dtype, device=w.device)
        for r in range(8):
            for c in range(8):
                p = torch.sigmoid(self(x)[:, 0, r, c])
                x[:, 0, r, c] = (torch.rand_like(p) < p).to(x.dtype)
        return x
''',
}

# name -> (cell key, the buggy cell source, one-line description)
BUGS: dict[str, tuple[str, str, str]] = {
    "bug_lstm_gate_order": ("lstm", LSTM.replace("i, f, g, o = gates.chunk", "i, f, o, g = gates.chunk"),
                            "gates read in the order i, f, o, g"),
    "bug_lstm_forget_on_h": ("lstm", LSTM.replace("c = torch.sigmoid(f) * c +", "c = torch.sigmoid(f) * h +"),
                             "the forget gate multiplies h instead of c"),
    "bug_gru_reset_bias": ("gru", GRU.replace(
        "hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)\n"
        "        r = torch.sigmoid(xr + hr)\n"
        "        z = torch.sigmoid(xz + hz)\n"
        "        n = torch.tanh(xn + r * hn)",
        "hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)\n"
        "        r = torch.sigmoid(xr + hr)\n"
        "        z = torch.sigmoid(xz + hz)\n"
        "        b_hn = self.bias_hh[2 * self.hidden_size:]\n"
        "        n = torch.tanh(xn + r * (hn - b_hn) + b_hn)"),
        "the reset gate does not multiply b_hn"),
    "bug_causal_conv_both_sides": ("causal_conv", CONV.replace(
        "self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)",
        "self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation,\n"
        "                              padding=\"same\")").replace(
        "return self.conv(F.pad(x, (self.left, 0)))[..., :T]",
        "return self.conv(F.pad(x, (self.shift, 0))[..., :T])"),
        "padding='same' (both sides): the output sees future inputs"),
    "bug_include_current_ignored": ("causal_conv", CONV.replace(
        "self.shift = 0 if include_current else 1", "self.shift = 0"),
        "include_current=False is ignored: the output sees the current input"),
    "bug_attention_sees_next": ("attention", ATTENTION.replace(".triu(1)", ".triu(2)"),
                                "the mask lets position t see t + 1"),
    "bug_pixel_ar_sees_current": ("pixel_ar", PIXEL_AR.replace(
        "self.fc1 = MaskedLinear(64, hidden, d_h[:, None] >= d_in[None, :])",
        "self.fc1 = MaskedLinear(64, hidden, d_h[:, None] + 1 >= d_in[None, :])"),
        "the first layer's mask lets hidden units see the pixel their outputs predict"),
}

EXAMPLES: dict[str, dict[str, str]] = {
    "correct": CORRECT,
    "different": DIFFERENT,
    **{name: {**CORRECT, key: source} for name, (key, source, _) in BUGS.items()},
}


def main() -> int:
    for name, (key, source, _) in BUGS.items():
        assert source != CORRECT[key], f"{name}: the bug replacement did not apply"
    for name, solution in EXAMPLES.items():
        path = HERE / "examples" / name / "autoregressive.ipynb"
        write_notebook(build_notebook(solution), path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
