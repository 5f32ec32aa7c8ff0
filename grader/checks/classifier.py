"""Trained classifiers: test accuracy computed by the grader from the model's logits.

The kernel is asked only for ``model(x) -> logits`` on the labelled test images the grader
chose; the argmax, the labels and the accuracy are computed here. What the notebook printed
about its accuracy is never read.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data import digit_labels, digits
from ..errors import StudentException
from ..protocol import Attr, Handle
from ..scoring import linear_credit
from .registry import CheckContext, Metric, Verdict, check

__all__ = ["accuracy_of"]

_CHUNK = 4096


def accuracy_of(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """Overall accuracy of argmax(logits) and the accuracy within each class."""
    pred = logits.argmax(dim=1)
    right = pred == labels
    classes = int(labels.max()) + 1 if labels.numel() else 0
    per_class = [float(right[labels == c].double().mean()) if (labels == c).any() else math.nan
                 for c in range(classes)]
    return float(right.double().mean()), per_class


@check("test_accuracy", required=("zero_at", "full_at"),
       optional=("model", "data", "method", "classes"),
       metric=Metric("test_accuracy", True))
def check_test_accuracy(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Test accuracy of the trained classifier (grader's argmax), credited linearly."""
    spec = params.get("model", {"class": "MLP", "checkpoint": None})
    model: Handle | Attr = ctx.model(spec)
    for name in filter(None, str(spec.get("attr", "")).split(".")):
        model = Attr(model, name)
    if params.get("method"):
        model = Attr(model, params["method"])
    data = params.get("data", {})
    split, form = data.get("split", "test"), data.get("form", "scaled")
    x, y = digits(split, form), digit_labels(split)
    n = int(data.get("n", len(x)))
    x, y = x[:n], y[:n]
    classes = int(params.get("classes", 10))
    parts = []
    for chunk in x.split(_CHUNK):
        try:
            out = ctx.kernel.call(model, chunk, seed=ctx.seed)
        except StudentException as exc:
            return Verdict.failed(f"the model raised {exc.ename}: {exc.evalue}",
                                  traceback=exc.traceback)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() \
                or tuple(out.shape) != (len(chunk), classes):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else \
                type(out).__name__
            return Verdict.failed(f"the model must return floating logits of shape "
                                  f"({len(chunk)}, {classes}); got {got}")
        parts.append(out.double())
    logits = torch.cat(parts)
    lo, hi = float(params["zero_at"]), float(params["full_at"])
    if not torch.isfinite(logits).all():
        return Verdict.failed("the model's logits contain nan or inf on the test images",
                              zero_at=lo, full_at=hi)
    acc, per_class = accuracy_of(logits, y)
    details = {"test_accuracy": round(acc, 6), "correct": int(round(acc * n)), "images": n,
               "per_class_accuracy": [round(v, 4) for v in per_class], "zero_at": lo,
               "full_at": hi, "split": split, "form": form}
    message = (f"test accuracy {acc:.4f} ({details['correct']}/{n} {split} images) (full "
               f"credit at >= {hi:g}, none at <= {lo:g})")
    return Verdict(linear_credit(acc, lo, hi), message, details=details)
