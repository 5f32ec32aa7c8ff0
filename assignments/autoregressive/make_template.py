"""Build the student template ``assignments/autoregressive/autoregressive.ipynb`` (no outputs).

Run from the repository root:  .venv/bin/python assignments/autoregressive/make_template.py

The cells a student completes have a key (``lstm``, ``gru``, ``causal_conv``, ``attention``,
``pixel_ar``); ``make_examples.py`` builds the example submissions from the same list,
replacing only keyed cells, so every example has the template's structure, parameters cell
and metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "grader": {"assignment": "autoregressive"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 2 — Autoregressive models: RNN cells, causal convolutions, self-attention

You will implement an LSTM cell, a GRU cell, a causal (dilated) 1-D convolution, causal
multi-head self-attention, and `PixelAR`, an autoregressive model of the 8x8 binary digits
(`digits("train", "binary")`), which you train.

**What you submit:** this notebook, `autoregressive.ipynb`, and the checkpoint `pixel_ar.pt`
that its training cell writes (`torch.save(model.state_dict(), "pixel_ar.pt")`).

**How it is graded.** The grader runs your notebook with `TRAIN = False`, then calls the names
below on inputs it chooses (random sizes and values, `float32` and sometimes `float64` after
`.double()` on your modules). It never reads what your notebook prints.

- `LSTMCell` and `GRUCell` are compared with `torch.nn.LSTMCell` / `torch.nn.GRUCell`: the grader
  loads *their* weights into *your* module with `load_state_dict`, so the parameter names, shapes
  and gate order must be exactly those documented below.
- Causality is verified from the structure of gradients (the output at position t back-propagated
  alone must give exactly zero gradient at every later input, and at the same input where that is
  excluded) and by changing future inputs (earlier outputs must not change at all).
- `PixelAR`: the grader computes your test negative log-likelihood itself from your logits.
- Every constructor argument of `PixelAR` needs a default: the grader builds `PixelAR()`.
- Follow the dtype of the inputs: create tensors with `x.new_zeros(...)`, `torch.zeros_like`, ...
"""

THEORY = r"""## Background

**LSTM** (`torch.nn.LSTMCell`, gates stacked in the order i, f, g, o along the first dimension of
`weight_ih` (4H, I) and `weight_hh` (4H, H)):
$$\begin{aligned} (i, f, g, o) &= \text{split}_4(W_{ih} x + b_{ih} + W_{hh} h + b_{hh}),\\
c' &= \sigma(f) \odot c + \sigma(i) \odot \tanh(g), \qquad h' = \sigma(o) \odot \tanh(c').\end{aligned}$$

**GRU** (`torch.nn.GRUCell`, gates r, z, n; `weight_ih` (3H, I), `weight_hh` (3H, H)):
$$\begin{aligned} r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \quad
z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}),\\
n &= \tanh\big(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})\big), \qquad h' = (1 - z)\odot n + z \odot h.
\end{aligned}$$
Note that the reset gate multiplies $b_{hn}$ too. A missing state (`None`) means zeros.

**Causal convolution.** A 1-D convolution with kernel size $k$ and dilation $d$ whose output at
time $t$ is $\sum_j w_j\, x_{t - j d}$: pad $(k-1)d$ zeros on the *left only*. With
`include_current=False` the output at $t$ must depend only on inputs at times $< t$ (shift the
input one step, or mask the current tap) — the first layer of an autoregressive model. A stack
of causal convolutions sees $1 + \sum_\ell (k_\ell - 1) d_\ell$ past inputs.

**Causal self-attention.** Scores $q_t \cdot k_s / \sqrt{d_h}$ are set to $-\infty$ for $s > t$
before the softmax, so position $t$ attends to positions $\le t$ only.

**Autoregressive image model.** With the 64 pixels in raster order,
$p(x) = \prod_{i} p(x_i \mid x_{<i})$ and each factor is a Bernoulli with logit $\ell_i(x_{<i})$.
`forward(x)` returns all 64 logits at once (one pass, teacher forcing): logit $i$ may depend on
pixels $0..i-1$ only (MADE: masked linear layers; PixelCNN: masked convolutions). Then
$\log p(x) = \sum_i x_i \ell_i - \mathrm{softplus}(\ell_i)$, and sampling draws the pixels one at a
time, each from $\sigma(\ell_i)$ computed from the pixels already drawn.
"""

IMPORTS = """import math  # noqa: F401

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (for your solutions)

from grader.data import digits
"""

PARAMETERS = """TRAIN = True      # the grader sets TRAIN = False when pixel_ar.pt is submitted
SEED = 0
DEVICE = "cpu"
"""

MD_LSTM = """## 1. LSTM cell

Parameters exactly as `torch.nn.LSTMCell`: `weight_ih (4H, I)`, `weight_hh (4H, H)`,
`bias_ih (4H,)`, `bias_hh (4H,)`, gates in the order (i, f, g, o). Do not use `nn.LSTMCell`.
"""

LSTM = '''class LSTMCell(nn.Module):
    """LSTMCell(input_size, hidden_size).

    forward(x (B, I), state=None or (h (B, H), c (B, H))) -> (h, c), each (B, H).
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        # TODO: nn.Parameter weight_ih, weight_hh, bias_ih, bias_hh

    def forward(self, x, state=None):
        raise NotImplementedError("LSTMCell.forward")
'''

MD_GRU = """## 2. GRU cell

Parameters exactly as `torch.nn.GRUCell`: `weight_ih (3H, I)`, `weight_hh (3H, H)`,
`bias_ih (3H,)`, `bias_hh (3H,)`, gates in the order (r, z, n). Do not use `nn.GRUCell`.
"""

GRU = '''class GRUCell(nn.Module):
    """GRUCell(input_size, hidden_size).   forward(x (B, I), h=None or (B, H)) -> h (B, H)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        # TODO: nn.Parameter weight_ih, weight_hh, bias_ih, bias_hh

    def forward(self, x, h=None):
        raise NotImplementedError("GRUCell.forward")
'''

MD_CONV = """## 3. Causal 1-D convolution

`forward(x (B, C, T)) -> (B, out_channels, T)`: the same length T; the output at t depends only
on inputs at times <= t (< t when `include_current=False`).
"""

CONV = '''class CausalConv1d(nn.Module):
    """CausalConv1d(in_channels, out_channels, kernel_size, dilation=1, include_current=True)."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, include_current=True):
        super().__init__()
        # TODO

    def forward(self, x):
        raise NotImplementedError("CausalConv1d.forward")
'''

MD_ATTENTION = """## 4. Causal self-attention

`forward(x (B, T, d_model)) -> (B, T, d_model)` with `n_heads` heads (d_model divisible by
n_heads); position t attends to positions <= t only.
"""

ATTENTION = '''class CausalSelfAttention(nn.Module):
    """CausalSelfAttention(d_model, n_heads)."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        # TODO

    def forward(self, x):
        raise NotImplementedError("CausalSelfAttention.forward")
'''

MD_PIXEL_AR = """## 5. PixelAR

An autoregressive model of the 64 binary pixels in raster order (row by row). Any architecture
whose logit i depends only on pixels 0..i-1 works: a MADE (masked MLP) or a small PixelCNN.
`PixelAR()` must build with no arguments.
"""

PIXEL_AR = '''class PixelAR(nn.Module):
    """forward(x (B, 1, 8, 8) in {0, 1}) -> logits (B, 1, 8, 8); logit i = logit p(x_i = 1 | x_<i).

    log_prob(x) -> (B,) log p(x) in nats.   sample(n) -> (n, 1, 8, 8) binary images (0.0 / 1.0).
    """

    def __init__(self):
        super().__init__()
        # TODO

    def forward(self, x):
        raise NotImplementedError("PixelAR.forward")

    def log_prob(self, x):
        raise NotImplementedError("PixelAR.log_prob")

    @torch.no_grad()
    def sample(self, n):
        raise NotImplementedError("PixelAR.sample")
'''

MD_TRAIN = """## 6. Training

Maximum likelihood with Adam; runs only when `TRAIN` is true and saves `pixel_ar.pt`. A MADE
trains in a few seconds on a CPU. Independent pixels give about 25.2 nats per test image; a good
model reaches about 18.
"""

TRAIN = '''EPOCHS = 100
BATCH_SIZE = 64
LR = 3e-3

if TRAIN:
    torch.manual_seed(SEED)
    x_train = digits("train", "binary").to(DEVICE)
    x_test = digits("test", "binary").to(DEVICE)
    model = PixelAR().to(DEVICE)
    with torch.no_grad():
        start = -model.log_prob(x_test).mean().item()
    print(f"untrained: test NLL {start:.2f} nats per image (64 ln 2 = 44.36 for logits 0)")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(x_train), device=DEVICE)
        for i in range(0, len(x_train), BATCH_SIZE):
            loss = -model.log_prob(x_train[perm[i:i + BATCH_SIZE]]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        if epoch == 1 or epoch % 20 == 0:
            model.eval()
            with torch.no_grad():
                nll = -model.log_prob(x_test).mean().item()
            print(f"epoch {epoch:4d}   test NLL {nll:7.3f} nats per image")
    model.eval()
    model.to("cpu")
    torch.save(model.state_dict(), "pixel_ar.pt")
    print("saved pixel_ar.pt")
'''

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Submit `autoregressive.ipynb` together with the `pixel_ar.pt` written by the training cell.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""

CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-lstm", MD_LSTM),
    ("code", "lstm", LSTM),
    ("markdown", "md-gru", MD_GRU),
    ("code", "gru", GRU),
    ("markdown", "md-causal-conv", MD_CONV),
    ("code", "causal_conv", CONV),
    ("markdown", "md-attention", MD_ATTENTION),
    ("code", "attention", ATTENTION),
    ("markdown", "md-pixel-ar", MD_PIXEL_AR),
    ("code", "pixel_ar", PIXEL_AR),
    ("markdown", "md-train", MD_TRAIN),
    ("code", "train", TRAIN),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("lstm", "gru", "causal_conv", "attention", "pixel_ar")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources."""
    return keyed_notebook(CELLS, METADATA, solution, SOLUTION_KEYS)


def main() -> int:
    write_notebook(build_notebook(), HERE / "autoregressive.ipynb")
    print(f"wrote {HERE / 'autoregressive.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
