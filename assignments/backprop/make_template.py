"""Build the student template ``assignments/backprop/backprop.ipynb`` (reproducibly, no outputs).

Run from the repository root:  .venv/bin/python assignments/backprop/make_template.py

The notebook is a list of cells; the cells a student completes have a key (``config``,
``linear_forward``, ``linear_backward``, ``relu_backward``, ``softmax_cross_entropy``,
``conv2d_forward``, ``mlp``, and the written answer ``explain``, a markdown cell tagged
``answer-backward`` that a TA grades: the rubric's manual item ``explain_backward``). ``make_examples.py`` builds the example submissions from the
same list, replacing only keyed cells (and, for one bug, the training hyper-parameters
cell ``train_config``), so every example has the template's structure, parameters cell
and metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "grader": {"assignment": "backprop"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 1 — Deep-learning review: layers, backpropagation, SGD

You will write the forward and backward passes of a linear layer and a ReLU by hand, a numerically
stable softmax cross-entropy with its gradient, a 2-d convolution, and train a small classifier
of the 8x8 digits (`digits("train", "scaled")`: 1,437 images with pixels in [0, 1], labels
`digit_labels("train")` in 0..9).

**What you submit:** this notebook, `backprop.ipynb`, and the checkpoint `mlp.pt` that its last
cell writes (`torch.save(model.state_dict(), "mlp.pt")`).

**How it is graded.** The grader runs your notebook with `TRAIN = False` (so it does not retrain),
then imports only the names below and calls them on inputs it chooses: random shapes and values,
extreme values such as logits of ±10,000, `float32` and sometimes `float64` tensors. It computes
the true gradients itself (autograd of its own forward pass and finite differences) and compares.
It never reads what your notebook prints. So:

- keep the names, argument order, shapes and units exactly as documented in each stub;
- every function must work for any batch size >= 1 and must follow the dtype of its inputs
  (create new tensors with `torch.zeros_like`, `x.new_zeros(...)`, ... not with a fixed dtype);
- in `linear_backward`, `relu_backward`, `softmax_cross_entropy` and `conv2d_forward` write the
  maths yourself with tensor operations: do not call `torch.autograd`, `F.linear`,
  `F.cross_entropy`, `F.softmax` or `F.conv2d` there (the grader compares with those);
- `MLP()` must build with no arguments: the grader builds it and loads `mlp.pt` into it, then
  measures its accuracy on the 360 test digits itself, in eval mode.
"""

THEORY = r"""## Background

**Linear layer.** $y = x W^\top + b$ with $x \in \mathbb{R}^{B \times I}$, $W \in \mathbb{R}^{O
\times I}$, $b \in \mathbb{R}^{O}$. Given the upstream gradient $G = \partial L / \partial y$
(shape $B \times O$), the chain rule gives
$$\frac{\partial L}{\partial x} = G W, \qquad \frac{\partial L}{\partial W} = G^\top x, \qquad
\frac{\partial L}{\partial b} = \sum_{n=1}^{B} G_{n,:}.$$
A parameter's gradient has the parameter's shape: $W$ and $b$ are shared by all examples of the
batch, so their gradients are **summed over the batch**.

**ReLU.** $\mathrm{relu}(x) = \max(x, 0)$; its backward passes the gradient where $x > 0$ and
blocks it where $x < 0$ (at exactly 0 either choice is a valid subgradient; it is not tested).

**Softmax cross-entropy.** For logits $z \in \mathbb{R}^{B \times C}$ and targets $t_n$,
$$L = \frac1B \sum_n \Big(\log \sum_c e^{z_{n,c}} - z_{n,t_n}\Big), \qquad
\frac{\partial L}{\partial z_{n,c}} = \frac1B\big(\mathrm{softmax}(z_n)_c - [c = t_n]\big).$$
**Stability:** $e^{z}$ overflows for $z \gtrsim 89$ (float32) or $709$ (float64). Subtract each
row's maximum first, $\log\sum_c e^{z_c} = m + \log\sum_c e^{z_c - m}$ with $m = \max_c z_c$; the
result is unchanged and every exponent is $\le 0$. The grader tests logits of ±10,000.

**Convolution.** What deep-learning libraries call convolution is a cross-correlation (the kernel
is **not** flipped):
$$y_{n,o,i,j} = b_o + \sum_{c,u,v} w_{o,c,u,v}\; x^{\text{pad}}_{n,\,c,\,i s + u,\,j s + v},$$
with stride $s$, zero padding $p$ on every side, and output size $H' = \lfloor (H + 2p - k)/s
\rfloor + 1$ (same for the width).
"""

IMPORTS = """import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (for your MLP, not for the hand-written functions)

from grader.data import digit_labels, digits
"""

PARAMETERS = """TRAIN = True      # the grader sets TRAIN = False when mlp.pt is submitted
SEED = 0
DEVICE = "cpu"
"""

MD_LINEAR = """## 1. Linear layer: forward and backward

Checked against the grader's forward, and your gradients against autograd and finite differences
on random shapes (including square `W`, where a transposed gradient has the right shape).
"""

CONFIG = """HIDDEN = 128      # hidden width of your MLP; you may change it
"""

LINEAR_FORWARD = '''def linear_forward(x, W, b):
    """y = x W^T + b.

    x (B, I), W (O, I), b (O,)  ->  y (B, O)
    """
    raise NotImplementedError("linear_forward")
'''

LINEAR_BACKWARD = '''def linear_backward(grad_out, x, W):
    """Backward pass of linear_forward.

    grad_out (B, O) = dL/dy, x (B, I), W (O, I)
        -> (grad_x (B, I), grad_W (O, I), grad_b (O,)); grad_W and grad_b summed over the batch.
    """
    raise NotImplementedError("linear_backward: return (grad_x, grad_W, grad_b)")
'''

MD_RELU = """## 2. ReLU backward
"""

RELU_BACKWARD = '''def relu_backward(grad_out, x):
    """Backward pass of relu(x) = max(x, 0): grad_out and x of the same shape -> grad_x."""
    raise NotImplementedError("relu_backward")
'''

MD_SOFTMAX = """## 3. Softmax cross-entropy and its gradient

Checked against a reference on random logits and at logits of ±10,000 (the loss and the gradient
must stay finite and exact).
"""

SOFTMAX = '''def softmax_cross_entropy(logits, targets):
    """Mean softmax cross-entropy over the batch, and its gradient w.r.t. the logits.

    logits (B, C) floats, targets (B,) int64 in [0, C)
        -> (loss: 0-d tensor, the MEAN over the batch; grad_logits (B, C): d loss / d logits)
    """
    raise NotImplementedError("softmax_cross_entropy: return (loss, grad_logits)")
'''

MD_CONV = """## 4. 2-d convolution

Checked against `torch.nn.functional.conv2d` on random shapes, strides and paddings.
"""

CONV = '''def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-d convolution (cross-correlation, as torch.nn.functional.conv2d), zero padding.

    x (B, Ci, H, W), w (Co, Ci, k, k), b (Co,), stride and padding ints
        -> (B, Co, H', W'), H' = (H + 2 padding - k) // stride + 1, same for W'.
    """
    raise NotImplementedError("conv2d_forward")
'''

MD_MLP = """## 5. A classifier of the digits

Any architecture of `torch.nn` layers works (an MLP with one or two hidden layers is plenty);
`forward` takes the `scaled` images (B, 1, 8, 8) and returns **logits** (B, 10), no softmax.
"""

MLP = '''class MLP(nn.Module):
    """(B, 1, 8, 8) scaled digits -> logits (B, 10).  MLP() must build with no arguments."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        # TODO: define your layers

    def forward(self, x):
        raise NotImplementedError("MLP.forward: return logits of shape (B, 10)")
'''

MD_TRAIN = """## 6. Training with SGD

This cell trains `MLP()` with SGD (momentum 0.9), using **your** `softmax_cross_entropy`: the
gradient it returns is fed to autograd with `logits.backward(grad_logits)`. It runs only when
`TRAIN` is true and takes a few seconds on a CPU; it saves `mlp.pt`. A good model reaches about
97 % test accuracy.
"""

TRAIN_CONFIG = """EPOCHS = 30
BATCH_SIZE = 64
LR = 0.1
MOMENTUM = 0.9
"""

TRAIN = '''if TRAIN:
    torch.manual_seed(SEED)
    x_train, y_train = digits("train", "scaled").to(DEVICE), digit_labels("train").to(DEVICE)
    x_test, y_test = digits("test", "scaled").to(DEVICE), digit_labels("test").to(DEVICE)
    model = MLP().to(DEVICE)
    with torch.no_grad():
        start = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"untrained: test accuracy {start:.4f}")
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(x_train), device=DEVICE)
        total = 0.0
        for i in range(0, len(x_train), BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            logits = model(x_train[idx])
            loss, grad_logits = softmax_cross_entropy(logits.detach(), y_train[idx])
            optimizer.zero_grad()
            logits.backward(grad_logits)
            optimizer.step()
            total += loss.item() * len(idx)
        if epoch == 1 or epoch % 10 == 0 or epoch == EPOCHS:
            model.eval()
            with torch.no_grad():
                accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
            print(f"epoch {epoch:3d}   train loss {total / len(x_train):.4f}   "
                  f"test accuracy {accuracy:.4f}")
    model.eval()
    model.to("cpu")
    torch.save(model.state_dict(), "mlp.pt")
    print("saved mlp.pt")
'''

MD_EXPLAIN = r"""## 7. Written answer: why `logits.backward(grad_logits)` trains the whole network

The training cell never calls `loss.backward()`: it feeds the gradient **your**
`softmax_cross_entropy` returns to autograd with `logits.backward(grad_logits)`. Explain in three
to five sentences why this trains every layer of the MLP, although you computed the gradient of
the loss with respect to the logits only. What does autograd do with `grad_logits`, and why must
it be the gradient of the *mean* loss?

This answer is graded by a TA (2 points), not by the grader. Write it in the cell below, which
carries the tag `answer-backward`; keep that cell (do not delete it or paste your answer in a
new one).
"""

EXPLAIN = """*Write your answer here.*
"""

ANSWER_TAG = "answer-backward"

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Submit `backprop.ipynb` together with the `mlp.pt` written by the training cell.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""

# (kind, key, source); key names the cells a solution replaces.
CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-linear", MD_LINEAR),
    ("code", "config", CONFIG),
    ("code", "linear_forward", LINEAR_FORWARD),
    ("code", "linear_backward", LINEAR_BACKWARD),
    ("markdown", "md-relu", MD_RELU),
    ("code", "relu_backward", RELU_BACKWARD),
    ("markdown", "md-softmax", MD_SOFTMAX),
    ("code", "softmax_cross_entropy", SOFTMAX),
    ("markdown", "md-conv", MD_CONV),
    ("code", "conv2d_forward", CONV),
    ("markdown", "md-mlp", MD_MLP),
    ("code", "mlp", MLP),
    ("markdown", "md-train", MD_TRAIN),
    ("code", "train_config", TRAIN_CONFIG),
    ("code", "train", TRAIN),
    ("markdown", "md-explain", MD_EXPLAIN),
    ("markdown", "explain", EXPLAIN),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("config", "linear_forward", "linear_backward", "relu_backward",
                 "softmax_cross_entropy", "conv2d_forward", "mlp", "train_config", "explain")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources; the
    written answer's cell carries the tag the rubric's manual item finds it by."""
    nb = keyed_notebook(CELLS, METADATA, solution, SOLUTION_KEYS)
    next(c for c in nb.cells if c["id"] == "explain").metadata["tags"] = [ANSWER_TAG]
    return nb


def main() -> int:
    write_notebook(build_notebook(), HERE / "backprop.ipynb")
    print(f"wrote {HERE / 'backprop.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
