"""Checks of latent-variable models, from black-box calls to the student's networks.

The grader computes the ELBO and the importance-weighted bound itself: it asks
the kernel only for ``encoder(x) -> (mu, logvar)`` and ``decoder(z) -> logits`` on
inputs it chose, draws every noise sample itself, and does the maths here in
float64. What the student's own ``elbo`` function or training printed is never
believed.

Nothing here assumes how the student draws noise or groups a computation (LABS.md): the
student's ``elbo`` is judged only by the mean and spread of what it returns, called on the
repeated images in several calls of bounded size, each under its own seed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import StudentException
from ..protocol import Attr, Handle, Name
from ..scoring import linear_credit
from .harness import digits_data, rubric_model
from .params import integer
from .registry import CheckContext, Metric, PropertyFailure, Verdict, check

_CHUNK = 16384
_ELBO_ROWS = 512          # rows per call of the student's ``elbo`` (see _student_elbos)


def encode(ctx: CheckContext, model: Handle, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.encoder(x)`` as float64 (mu, logvar); a malformed answer is the student's
    failure (PropertyFailure), not a protocol error that would send the item to review."""
    out = ctx.kernel.call(Attr(model, "encoder"), x.float(), seed=ctx.seed)
    if not (isinstance(out, (tuple, list)) and len(out) == 2
            and all(torch.is_tensor(t) and t.is_floating_point() for t in out)):
        raise PropertyFailure(f"the encoder must return a pair of float tensors (mu, logvar); "
                              f"it returned {_kind(out)}")
    mu, logvar = (t.double() for t in out)
    if mu.shape != logvar.shape or mu.dim() != 2 or mu.shape[0] != x.shape[0]:
        raise PropertyFailure(f"the encoder returned mu of shape {tuple(mu.shape)} and logvar of "
                              f"shape {tuple(logvar.shape)} for {x.shape[0]} images; expected "
                              f"({x.shape[0]}, latent_dim) each")
    return mu, logvar


def decode(ctx: CheckContext, model: Handle, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``model.decoder(z)`` in chunks, as float64 logits shaped like ``like``'s images."""
    parts = []
    for chunk in z.float().split(_CHUNK):
        out = ctx.kernel.call(Attr(model, "decoder"), chunk, seed=ctx.seed)
        want = (chunk.shape[0], *like.shape[1:])
        if not torch.is_tensor(out) or not out.is_floating_point() or out.shape != want:
            raise PropertyFailure(f"the decoder must return float logits of shape {want} for "
                                  f"{chunk.shape[0]} latents; it returned {_kind(out)}")
        parts.append(out.double())
    return torch.cat(parts)


def _kind(value: Any) -> str:
    if torch.is_tensor(value):
        return f"a {str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_kind(v) for v in value[:3])
        return f"a {type(value).__name__} of {len(value)}: ({inner})"
    return type(value).__name__


def _log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits).double(),
                                               reduction="none").flatten(2).sum(-1)


def grader_bounds(ctx: CheckContext, model: Handle, x: torch.Tensor, samples: int,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ELBO draws (S, B) and the importance-weighted bound with K = S (B,)."""
    mu, logvar = encode(ctx, model, x)
    std = torch.exp(0.5 * logvar)
    gen = torch.Generator().manual_seed(ctx.seed)
    eps = torch.randn((samples, *mu.shape), generator=gen, dtype=torch.float64)
    z = mu + std * eps                                           # (S, B, L)
    logits = decode(ctx, model, z.reshape(-1, mu.shape[1]), x).reshape(samples, *x.shape)
    log_px_z = _log_bernoulli(x.double().unsqueeze(0), logits)   # (S, B)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
    elbo = log_px_z - kl
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
    log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(-1)
    iwae = torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(samples)
    return elbo, iwae


def _student_elbos(ctx: CheckContext, fn: str, model: Handle, x: torch.Tensor, reps: int
                   ) -> torch.Tensor:
    """Up to ``reps`` independent ELBO estimates of each image by the student, (R, B), float64.

    The images are repeated along the batch, at most ``_ELBO_ROWS`` rows per call: a correct
    ``elbo`` that loops over examples must not meet the call timeout (LABS.md leaves the
    grouping free). Each call gets its own seed, so a student drawing from torch's global
    generator draws fresh noise in every call, and one drawing from a private generator does
    anyway. Rows within a call are taken as independent draws (as ``reparameterize``'s
    moments are); a call that repeats an earlier one bit for bit (code that reseeds itself)
    adds no draw and is counted once, so its standard error is not understated.
    """
    per_call = max(2, _ELBO_ROWS // len(x))          # two draws at least: a variance
    parts: list[torch.Tensor] = []
    for k, start in enumerate(range(0, reps, per_call)):
        n = min(per_call, reps - start)
        out = ctx.kernel.call(Name(fn), x.repeat(n, 1, 1, 1), Attr(model, "encoder"),
                              Attr(model, "decoder"), seed=ctx.seed + k)
        if not torch.is_tensor(out) or out.shape != (n * len(x),):
            raise PropertyFailure(f"`{fn}` must return one value per image: for {n * len(x)} "
                                  f"images, shape ({n * len(x)},); got {_kind(out)}")
        draws = out.double().reshape(n, len(x))
        if not any(p.shape == draws.shape and torch.equal(p, draws) for p in parts):
            parts.append(draws)
    return torch.cat(parts)


@check("elbo_estimator", required=("function",),
       optional=("model", "data", "repeats", "grader_samples", "z", "atol"),
       types={"grader_samples": integer(min=2)})
def check_elbo_estimator(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The student's one-sample ELBO averages to the grader's ELBO of the same networks."""
    ctx.require(params["function"])
    model = rubric_model(ctx, params, "VAE")
    x = digits_data(params)
    reps, z_crit = int(params.get("repeats", 64)), float(params.get("z", 5.0))
    atol = float(params.get("atol", 0.05))
    try:
        theirs = _student_elbos(ctx, params["function"], model, x, reps)
    except StudentException as exc:
        return Verdict.failed(f"your `{params['function']}` raised {exc.ename}: {exc.evalue}",
                              traceback=exc.traceback)
    except PropertyFailure as exc:
        return Verdict.failed(exc.message)
    try:
        ours, _ = grader_bounds(ctx, model, x, int(params.get("grader_samples", 256)))
    except PropertyFailure as exc:
        return Verdict.failed(exc.message)
    diff = theirs.mean(0) - ours.mean(0)
    se = (theirs.var(0) / theirs.shape[0] + ours.var(0) / ours.shape[0]).sqrt()
    gap, gap_se = float(diff.mean()), float(se.pow(2).sum().sqrt() / len(x))
    details = {"student_mean_nats": round(float(theirs.mean()), 4),
               "grader_mean_nats": round(float(ours.mean()), 4),
               "difference_nats": round(gap, 4), "standard_error": round(gap_se, 4),
               "images": len(x), "student_draws": theirs.shape[0]}
    if not torch.isfinite(theirs).all():
        return Verdict.failed("your ELBO estimates contain nan or inf", **details)
    if abs(gap) <= z_crit * gap_se + atol:
        return Verdict.passed(f"mean ELBO {details['student_mean_nats']} nats matches the "
                              f"grader's {details['grader_mean_nats']} nats", **details)
    ratio = float(theirs.mean() / ours.mean()) if float(ours.mean()) else float("nan")
    return Verdict.failed(
        f"your ELBO averages {details['student_mean_nats']} nats per image, the grader's ELBO of "
        f"the same encoder and decoder is {details['grader_mean_nats']} nats (difference "
        f"{gap:.3g}, {abs(gap) / max(gap_se, 1e-12):.1f} standard errors; ratio {ratio:.3g}). "
        "Check the KL sign and factor, that both terms are summed over dimensions, and that "
        "std = exp(0.5 * logvar).", **details)


@check("likelihood_bounds", optional=("model", "data", "samples", "z"))
def check_likelihood_bounds(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The grader's ELBO <= its importance-weighted bound (K samples) <= 0, on test data."""
    model = rubric_model(ctx, params, "VAE")
    x = digits_data(params)
    samples, z_crit = int(params.get("samples", 256)), float(params.get("z", 5.0))
    try:
        elbo, iwae = grader_bounds(ctx, model, x, samples)
    except PropertyFailure as exc:
        return Verdict.failed(exc.message)
    elbo_mean, iwae_mean = float(elbo.mean()), float(iwae.mean())
    se = float(elbo.mean(0).std() / math.sqrt(len(x)))
    details = {"elbo_nats": round(elbo_mean, 4), "iwae_nats": round(iwae_mean, 4),
               "K": samples, "images": len(x)}
    if not (math.isfinite(elbo_mean) and math.isfinite(iwae_mean)):
        return Verdict.failed("the model's bounds are not finite: the encoder or decoder "
                              "outputs nan or inf", **details)
    if elbo_mean > iwae_mean + z_crit * se or iwae_mean > 0:
        return Verdict.failed(f"bounds out of order: ELBO {elbo_mean:.3f}, IWAE-{samples} "
                              f"{iwae_mean:.3f} nats (need ELBO <= IWAE <= 0)", **details)
    return Verdict.passed(f"ELBO {elbo_mean:.2f} <= IWAE-{samples} {iwae_mean:.2f} <= 0 nats",
                          **details)


@check("test_elbo", required=("zero_at", "full_at"), optional=("model", "data", "samples"),
       metric=Metric("test_elbo_nats", True))
def check_test_elbo(ctx: CheckContext, params: dict[str, Any]) -> Verdict:
    """The grader's ELBO on the test split, credited linearly between calibrated anchors."""
    model = rubric_model(ctx, params, "VAE")
    x = digits_data(params)
    try:
        elbo, _ = grader_bounds(ctx, model, x, int(params.get("samples", 16)))
    except PropertyFailure as exc:
        return Verdict.failed(exc.message)
    value = float(elbo.mean())
    lo, hi = float(params["zero_at"]), float(params["full_at"])
    details = {"test_elbo_nats": round(value, 4), "zero_at": lo, "full_at": hi,
               "images": len(x)}
    message = (f"test ELBO {value:.6g} nats per image (full credit at >= {hi:g}, none at "
               f"<= {lo:g})")
    return Verdict(linear_credit(value, lo, hi), message, details=details)
