"""Checks of trained autoregressive Bernoulli models, from black-box calls to forward/sample.

The kernel is asked only for ``model(x) -> logits`` (shaped like x, logit i = logit
p(x_i = 1 | x_<i) in raster order), ``model.log_prob(x)`` and ``model.sample(n)``. The
grader computes every log-likelihood itself from the logits, in float64; the student's
``log_prob`` is compared with it, never believed. A model whose logits are not causal
on the evaluation data gets no likelihood credit: its "NLL" is not a likelihood.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .harness import digits_data, rubric_model, together
from ..errors import StudentException
from ..protocol import Attr, Handle
from ..scoring import linear_credit
from .compare import Tolerance, mismatch
from .params import boolean, integer
from .registry import CheckContext, Metric, Verdict, check

__all__ = ["bernoulli_log_prob", "poisson_binomial_pvalues"]

_CHUNK = 4096


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i), per row, float64."""
    nll = F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none")
    return -nll.flatten(1).sum(1)


def logits_of(ctx: CheckContext, model: Handle, x: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``x`` (validated: a finite tensor shaped like x), float64."""
    parts = []
    chunks = x.float().split(_CHUNK)
    answers = together([functools.partial(ctx.kernel.call, model, c, seed=ctx.seed)
                        for c in chunks])
    for chunk, answer in zip(chunks, answers):
        out = answer.value()
        if not torch.is_tensor(out) or tuple(out.shape) != tuple(chunk.shape):
            raise _Bad(f"forward(x) must return logits shaped like x {tuple(chunk.shape)}, got "
                       f"{getattr(out, 'shape', type(out).__name__)}")
        parts.append(out.double())
    logits = torch.cat(parts)
    if not torch.isfinite(logits).all():
        raise _Bad(f"{int((~torch.isfinite(logits)).sum())} logits are nan or inf")
    return logits


class _Bad(Exception):
    """A reply that fails the contract: becomes a failed verdict."""


def causality_violation(ctx: CheckContext, model: Handle, x: torch.Tensor,
                        logits: torch.Tensor) -> str | None:
    """Flip the pixels from s on (for every s): logits 0..s must stay bit-identical."""
    flat = x.reshape(len(x), -1)
    base = logits.reshape(len(x), -1)
    steps = flat.shape[1]
    changed = [flat.clone() for _ in range(steps)]
    for s in range(steps):
        changed[s][:, s:] = 1.0 - changed[s][:, s:]
    answers = together([functools.partial(logits_of, ctx, model, c.reshape(x.shape))
                        for c in changed])                   # one request for all 64 flips
    for s, answer in enumerate(answers):
        other = answer.value().reshape(len(x), -1)
        if not torch.equal(other[:, :s + 1], base[:, :s + 1]):
            t = int((other[:, :s + 1] != base[:, :s + 1]).any(0).nonzero()[0])
            return (f"flipping pixels {s}.. changed the logit of pixel {t} "
                    f"(row {t // 8}, column {t % 8}): logit {t} may depend only on pixels < {t}")
    return None


@check("ar_log_prob", optional=("model", "data", "method", "random", "atol", "rtol"),
       types={"random": integer(min=0)})
def check_ar_log_prob(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``log_prob(x)`` equals the Bernoulli log-likelihood of x under the model's own logits."""
    model = rubric_model(ctx, params, "PixelAR")
    x = digits_data(params)
    n_random = int(params.get("random", 32))
    gen = torch.Generator().manual_seed(ctx.seed)
    rand = torch.bernoulli(torch.full((n_random, *x.shape[1:]), 0.5), generator=gen)
    x = torch.cat([x, rand])
    tol = Tolerance(float(params.get("rtol", 1e-5)), float(params.get("atol", 1e-3)))
    try:
        logits = logits_of(ctx, model, x)
        theirs = ctx.kernel.call(Attr(model, params.get("method", "log_prob")), x.float(),
                                 seed=ctx.seed)
    except _Bad as exc:
        return Verdict.failed(str(exc))
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    ours = bernoulli_log_prob(x, logits)
    why = mismatch(theirs, ours, tol, path="log_prob")
    details = {"images": len(x), "grader_mean_nats": round(float(ours.mean()), 4)}
    if why:
        return Verdict.failed(f"log_prob(x) is not the Bernoulli log-likelihood of x under your "
                              f"own logits: {why}",
                              {"inputs": {"x": f"{len(x) - n_random} test digits and {n_random} "
                                          "random binary images"},
                               "expected": f"mean {float(ours.mean()):.4f} nats",
                               "actual": _mean_text(theirs)}, **details)
    return Verdict.passed(f"log_prob equals the sum of Bernoulli log-probabilities of the logits "
                          f"on {len(x)} images", **details)


def _mean_text(value: object) -> str:
    if torch.is_tensor(value) and value.is_floating_point() and value.numel():
        return f"mean {float(value.double().mean()):.4f} nats, shape {tuple(value.shape)}"
    return repr(value)[:100]


def poisson_binomial_pvalues(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the column sums of binary ``x`` (N, D) under independent
    Bernoulli(p) draws (N, D): the exact Poisson-binomial distribution, by dynamic programming."""
    n, d = p.shape
    dist = np.zeros((d, n + 1))
    dist[:, 0] = 1.0
    for k in range(n):
        pk = p[k][:, None]
        dist[:, 1:k + 2] = dist[:, 1:k + 2] * (1 - pk) + dist[:, 0:k + 1] * pk
        dist[:, 0] *= 1 - p[k]
    counts = x.sum(0).round().astype(int)
    lower = np.cumsum(dist, axis=1)[np.arange(d), counts]
    upper = np.cumsum(dist[:, ::-1], axis=1)[:, ::-1][np.arange(d), counts]   # tail sums, not
    return np.clip(2 * np.minimum(lower, upper), 0.0, 1.0)                   # 1 - cdf (< 0)


@check("ar_sample_consistency", optional=("model", "method", "n", "alpha", "timeout"))
def check_ar_sample_consistency(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """``sample(n)`` draws each pixel from sigmoid of its own logit given the earlier pixels.

    For every pixel i, the number of samples with x_i = 1 is tested against the exact
    Poisson-binomial law of draws with probabilities sigmoid(logit_i(sample)) (logits computed
    by the grader on the samples); pixel 0 is the contract's "frequency of x_1 = 1 matches
    sigmoid of the first logit". Family-wise false-alarm rate ``alpha`` (Bonferroni).

    ``sample(n)`` is ONE call (a sampler may return the same draws on every call: only one
    call's draws are independent by contract), so its time limit is ``timeout`` seconds
    rather than the rubric's per-call limit: 64 sequential passes over n images is slow for
    a correct PixelCNN on a busy machine.
    """
    model = rubric_model(ctx, params, "PixelAR")
    n, alpha = int(params.get("n", 2000)), float(params.get("alpha", 1e-6))
    try:
        samples = ctx.kernel.call(Attr(model, params.get("method", "sample")), n, seed=ctx.seed,
                                  timeout=params.get("timeout"))
        if not torch.is_tensor(samples) or samples.dim() < 2 or samples.shape[0] != n:
            raise _Bad(f"sample({n}) must return a tensor with {n} rows, got "
                       f"{getattr(samples, 'shape', type(samples).__name__)}")
        x = samples.double()
        if not ((x == 0) | (x == 1)).all():
            raise _Bad("sample(n) must return binary draws (0.0 or 1.0): each pixel is drawn "
                       "given the pixels drawn before it, not returned as a probability")
        logits = logits_of(ctx, model, x)
    except _Bad as exc:
        return Verdict.failed(str(exc))
    except StudentException as exc:
        return Verdict.failed(f"your code raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    flat_x = x.reshape(n, -1).numpy()
    probs = torch.sigmoid(logits.reshape(n, -1)).numpy()
    pvals = poisson_binomial_pvalues(flat_x, probs)
    d = pvals.shape[0]
    worst = int(np.argmin(pvals))
    first = {"first_pixel_frequency": round(float(flat_x[:, 0].mean()), 5),
             "first_pixel_sigmoid_logit_mean": round(float(probs[:, 0].mean()), 5),
             "first_pixel_p_value": float(pvals[0])}
    details = {"samples": n, "alpha": alpha, "pixels": d, "worst_pixel": worst,
               "worst_p_value": float(pvals[worst]), **first}
    if pvals[worst] * d >= alpha:
        return Verdict.passed(f"every pixel's frequency in {n} samples matches the model's own "
                              f"conditional probabilities (smallest p-value {pvals[worst]:.2g}, "
                              f"false-alarm rate {alpha:g})", **details)
    return Verdict.failed(
        f"pixel {worst} (row {worst // 8}, column {worst % 8}) is 1 in "
        f"{int(flat_x[:, worst].sum())} of {n} samples, but the model's own logits on those "
        f"samples expect {float(probs[:, worst].sum()):.1f} (p-value {pvals[worst]:.2g}, limit "
        f"{alpha / d:.2g}): sample pixel i from sigmoid(logit i) computed from the pixels "
        "already drawn",
        {"inputs": {"n": str(n)}, "expected": f"about {float(probs[:, worst].sum()):.1f} ones",
         "actual": f"{int(flat_x[:, worst].sum())} ones"}, **details)


@check("ar_test_nll", required=("zero_at", "full_at"), optional=("model", "data", "causal"),
       types={"causal": boolean()},
       metric=Metric("test_nll_nats", False))
def check_ar_test_nll(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """Test NLL (nats per image) computed by the grader from the model's logits, credited
    linearly from ``zero_at`` (0) to ``full_at`` (1); no credit when the logits are not causal."""
    model = rubric_model(ctx, params, "PixelAR")
    x = digits_data(params)
    lo, hi = float(params["zero_at"]), float(params["full_at"])
    try:
        logits = logits_of(ctx, model, x)
        why = causality_violation(ctx, model, x, logits) if params.get("causal", True) else None
    except _Bad as exc:
        return Verdict.failed(str(exc))
    value = float(-bernoulli_log_prob(x, logits).mean())
    details = {"test_nll_nats": round(value, 4), "zero_at": lo, "full_at": hi, "images": len(x)}
    if why:
        return Verdict.failed(f"test NLL {value:.4g} nats is not a likelihood, so it earns "
                              f"nothing: {why}", **details)
    return Verdict(linear_credit(value, lo, hi), f"test NLL {value:.6g} nats per image (full "
                   f"credit at <= {hi:g}, none at >= {lo:g})", details=details)
