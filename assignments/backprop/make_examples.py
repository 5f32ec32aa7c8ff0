"""Build the example submissions ``assignments/backprop/examples/<name>/backprop.ipynb``.

Run from the repository root:  .venv/bin/python assignments/backprop/make_examples.py

Each example is the template of ``make_template.py`` with its solution cells filled in;
only the keyed cells differ. ``correct`` is a plain solution; ``different`` is correct but
makes other choices everywhere the contract allows; each ``bug_*`` is ``correct`` with
exactly one change (see examples/README.md). The checkpoints ``mlp.pt`` are written by
``make_checkpoints.py``, which runs each notebook's own training cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

CORRECT: dict[str, str] = {
    "config": """HIDDEN = 128      # hidden width of your MLP; you may change it
""",
    "linear_forward": '''def linear_forward(x, W, b):
    """y = x W^T + b: x (B, I), W (O, I), b (O,) -> (B, O)."""
    return x @ W.T + b
''',
    "linear_backward": '''def linear_backward(grad_out, x, W):
    """(grad_x (B, I), grad_W (O, I), grad_b (O,)) of y = x W^T + b, summed over the batch."""
    grad_x = grad_out @ W
    grad_W = grad_out.T @ x
    grad_b = grad_out.sum(dim=0)
    return grad_x, grad_W, grad_b
''',
    "relu_backward": '''def relu_backward(grad_out, x):
    """grad_out where x > 0, else 0."""
    return grad_out * (x > 0).to(grad_out.dtype)
''',
    "softmax_cross_entropy": '''def softmax_cross_entropy(logits, targets):
    """(mean cross-entropy, its gradient w.r.t. logits); row maximum subtracted for stability."""
    batch = logits.shape[0]
    shifted = logits - logits.max(dim=1, keepdim=True).values
    exp = torch.exp(shifted)
    sum_exp = exp.sum(dim=1, keepdim=True)
    log_probs = shifted - torch.log(sum_exp)
    rows = torch.arange(batch)
    loss = -log_probs[rows, targets].sum() / batch
    grad = exp / sum_exp
    grad[rows, targets] -= 1.0
    return loss, grad / batch
''',
    "conv2d_forward": '''def conv2d_forward(x, w, b, stride=1, padding=0):
    """Cross-correlation with zero padding, one output position at a time."""
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
''',
    "mlp": '''class MLP(nn.Module):
    """64 -> HIDDEN -> HIDDEN -> 10 with ReLU: (B, 1, 8, 8) -> logits (B, 10)."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)
''',
    "explain": """`logits.backward(grad_logits)` starts backpropagation at the logits instead of at
a scalar loss: autograd takes `grad_logits` as the upstream gradient dL/dlogits and applies the
chain rule backwards through every layer that produced the logits (a vector-Jacobian product per
layer), so each weight's `.grad` becomes dL/dW. That is exactly what `loss.backward()` would
compute, because it would first produce the same dL/dlogits and then do the same thing. It must
be the gradient of the mean loss, since that is the loss SGD minimises: with the sum, every
gradient would be B times larger, as if the learning rate were multiplied by the batch size.
""",
}

DIFFERENT: dict[str, str] = {
    "config": """HIDDEN = 256      # a wider first layer
""",
    "linear_forward": '''def linear_forward(x, W, b):
    """torch.addmm(b, x, W^T)."""
    return torch.addmm(b, x, W.t())
''',
    "linear_backward": '''def linear_backward(grad_out, x, W):
    """The three gradients by einsum."""
    grad_x = torch.einsum("bo,oi->bi", grad_out, W)
    grad_W = torch.einsum("bo,bi->oi", grad_out, x)
    grad_b = torch.einsum("bo->o", grad_out)
    return (grad_x, grad_W, grad_b)
''',
    "relu_backward": '''def relu_backward(grad_out, x):
    """torch.where, with the other subgradient choice at 0 (x >= 0 passes)."""
    return torch.where(x >= 0, grad_out, torch.zeros_like(grad_out))
''',
    "softmax_cross_entropy": '''def softmax_cross_entropy(logits, targets):
    """log-sum-exp form with torch.logsumexp and a one-hot matrix."""
    one_hot = torch.zeros_like(logits)
    one_hot.scatter_(1, targets.unsqueeze(1), 1.0)
    lse = torch.logsumexp(logits, dim=1)
    loss = (lse - (one_hot * logits).sum(dim=1)).mean()
    probs = torch.exp(logits - lse.unsqueeze(1))
    return loss, (probs - one_hot) / logits.shape[0]
''',
    "conv2d_forward": '''def conv2d_forward(x, w, b, stride=1, padding=0):
    """im2col: F.pad, then Tensor.unfold over height and width, then one matrix product."""
    k = w.shape[-1]
    x = F.pad(x, (padding, padding, padding, padding))
    cols = x.unfold(2, k, stride).unfold(3, k, stride)       # (B, Ci, H', W', k, k)
    out = torch.einsum("bchwuv,ocuv->bohw", cols, w)
    return out + b.view(1, -1, 1, 1)
''',
    "mlp": '''class MLP(nn.Module):
    """Three hidden layers of decreasing width, GELU, dropout (off in eval mode)."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.flatten = nn.Flatten()
        self.layers = nn.ModuleList([nn.Linear(64, hidden), nn.Linear(hidden, hidden // 2),
                                     nn.Linear(hidden // 2, 64)])
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        h = self.flatten(x)
        for layer in self.layers:
            h = self.dropout(F.gelu(layer(h)))
        return self.head(h)
''',
    "explain": """Backprop is the chain rule: dL/dtheta = (dL/dlogits)(dlogits/dtheta). My function
gives the first factor; `backward(grad_logits)` makes autograd multiply it by the Jacobian of
the logits with respect to each parameter, layer by layer from the head to the first Linear, and
store the results in `.grad` for the optimiser. Dividing by B keeps the step size independent of
the batch size.
""",
}


def _bug(cell: str, old: str, new: str) -> dict[str, str]:
    source = CORRECT.get(cell) or _TEMPLATE_CELLS[cell]
    if source.count(old) != 1:
        raise ValueError(f"{cell}: {old!r} must occur exactly once")
    return {**CORRECT, cell: source.replace(old, new)}


_TEMPLATE_CELLS = {"train_config": """EPOCHS = 30
BATCH_SIZE = 64
LR = 0.1
MOMENTUM = 0.9
"""}

EXAMPLES: dict[str, dict[str, str]] = {
    "correct": CORRECT,
    "different": DIFFERENT,
    "bug_grad_w_transposed": _bug("linear_backward", "grad_W = grad_out.T @ x",
                                  "grad_W = x.T @ grad_out"),
    "bug_grad_b_not_summed": _bug("linear_backward", "grad_b = grad_out.sum(dim=0)",
                                  "grad_b = grad_out"),
    "bug_softmax_no_max_shift": _bug("softmax_cross_entropy",
                                     "shifted = logits - logits.max(dim=1, keepdim=True).values",
                                     "shifted = logits"),
    "bug_true_convolution": _bug("conv2d_forward", "out[:, :, i, j] = torch.einsum("
                                 "\"bcuv,ocuv->bo\", patch, w) + b",
                                 "out[:, :, i, j] = torch.einsum(\"bcuv,ocuv->bo\", patch, "
                                 "w.flip(2, 3)) + b"),
    "bug_undertrained_mlp": _bug("train_config", "EPOCHS = 30", "EPOCHS = 1"),
}


def main() -> int:
    for name, solution in EXAMPLES.items():
        path = HERE / "examples" / name / "backprop.ipynb"
        write_notebook(build_notebook(solution), path)
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
