"""The VAE lab's checks (``grader.checks.latent``) and its shape items, without a kernel.

The trusted reference VAE and its checkpoint run in-process behind a small stand-in for the
kernel that resolves names, attributes and handles as the sandboxed one does (the grader's
seed reaches torch's global generator before each call, calls run under ``no_grad``). The
student functions below are correct ones LABS.md allows but the reference does not write:
a private generator, several draws averaged with a Monte Carlo KL, a per-example loop; and
two subtle bugs. Each check must judge them by what they return, nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from grader.checks.latent import _ELBO_ROWS
from grader.checks.registry import REGISTRY, CheckContext
from grader.protocol import Attr, Handle, Name

from conftest import reference_module

REPO = Path(__file__).resolve().parent.parent


R = reference_module("vae")


class _InProcessKernel:
    """Just enough of KernelProxy for the latent and shape checks, on in-process objects."""

    def __init__(self, names: dict[str, Any]) -> None:
        self.names, self.handles, self.calls = names, {}, []   # type: ignore[var-annotated]

    def resolve(self, ref: Any) -> Any:
        if isinstance(ref, Name):
            return self.names[ref.name]
        if isinstance(ref, Handle):
            return self.handles[ref.key]
        if isinstance(ref, Attr):
            return getattr(self.resolve(ref.obj), ref.name)
        return ref

    def keep(self, obj: Any) -> Handle:
        key = f"h{len(self.handles)}"
        self.handles[key] = obj
        return Handle(key, type(obj).__name__)

    def get(self, target: Any, keep: bool = False) -> Any:
        return self.resolve(target)

    def call(self, target: Any, *args: Any, seed: int | None = None, keep: bool = False,
             **_: Any) -> Any:
        self.calls.append((target, args, seed))
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = self.resolve(target)(*[self.resolve(a) for a in args])
        return self.keep(out) if keep or isinstance(out, nn.Module) else out

    def load_checkpoint(self, cls: Any, path: str, *args: Any) -> Handle:
        model = self.resolve(cls)(*args)
        model.load_state_dict(torch.load(REPO / "reference/checkpoints" / path,
                                         weights_only=True))
        return self.keep(model.eval())


def _run(kind: str, params: dict[str, Any], **names: Any) -> tuple[Any, _InProcessKernel]:
    kernel = _InProcessKernel({"VAE": R.VAE, **names})
    ctx = CheckContext(kernel, R, seed=0)  # type: ignore[arg-type]
    return REGISTRY[kind].fn(ctx, params), kernel


ESTIMATOR = {"function": "elbo", "model": {"class": "VAE", "checkpoint": "vae.pt"},
             "data": {"split": "test", "form": "binary", "n": 32}, "repeats": 64,
             "grader_samples": 256}
BOUNDS = {"model": {"class": "VAE", "checkpoint": "vae.pt"},
          "data": {"split": "test", "form": "binary", "n": 32}, "samples": 64}

_PRIVATE = torch.Generator().manual_seed(11)


def elbo_private_generator(x, encoder, decoder):  # type: ignore[no-untyped-def]
    mu, logvar = encoder(x)
    eps = torch.empty_like(mu).normal_(generator=_PRIVATE)
    z = eps.mul_(torch.exp(0.5 * logvar)).add_(mu)
    return R.bernoulli_log_likelihood(x, decoder(z)) - R.gaussian_kl(mu, logvar)


def elbo_five_draws_mc_kl(x, encoder, decoder):  # type: ignore[no-untyped-def]
    """Five draws per image in another order, KL by Monte Carlo: unbiased, other variance."""
    mu, logvar = encoder(x)
    eps = torch.randn(mu.shape[1], 5, mu.shape[0]).permute(1, 2, 0)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_px = R.bernoulli_log_likelihood(x.repeat(5, 1, 1, 1), decoder(z.reshape(-1, mu.shape[1])))
    log_pz_minus_qz = (-0.5 * z.pow(2) + 0.5 * eps.pow(2) + 0.5 * logvar).sum(-1)
    return (log_px.reshape(5, -1) + log_pz_minus_qz).mean(0)


def elbo_decodes_mean(x, encoder, decoder):  # type: ignore[no-untyped-def]
    mu, logvar = encoder(x)
    return R.bernoulli_log_likelihood(x, decoder(mu)) - R.gaussian_kl(mu, logvar)


def test_correct_estimators_match_whatever_their_noise() -> None:
    for elbo in (R.elbo, elbo_private_generator, elbo_five_draws_mc_kl):
        verdict, _ = _run("elbo_estimator", ESTIMATOR, elbo=elbo)
        assert verdict.fraction == 1.0, (elbo.__name__, verdict.message)


def test_an_elbo_that_reseeds_itself_counts_each_distinct_call_once() -> None:
    """Identical calls add no draws: the standard error comes from the distinct ones."""
    def elbo(x, encoder, decoder):  # type: ignore[no-untyped-def]
        torch.manual_seed(123)
        return R.elbo(x, encoder, decoder)

    verdict, _ = _run("elbo_estimator", ESTIMATOR, elbo=elbo)
    assert verdict.fraction == 1.0, verdict.message
    assert verdict.details["student_draws"] == _ELBO_ROWS // 32, verdict.details


def test_decoding_the_mean_is_caught_with_its_standard_errors() -> None:
    verdict, _ = _run("elbo_estimator", ESTIMATOR, elbo=elbo_decodes_mean)
    assert verdict.fraction == 0.0 and "standard errors" in verdict.message, verdict.message


def test_the_student_elbo_is_called_in_bounded_batches_each_under_its_own_seed() -> None:
    """A per-example loop must not meet the call timeout, and torch's global generator must
    not replay one noise in every call (the same seed each time would)."""
    verdict, kernel = _run("elbo_estimator", ESTIMATOR, elbo=R.elbo)
    calls = [(args[0].shape[0], seed) for target, args, seed in kernel.calls
             if target == Name("elbo")]
    assert verdict.fraction == 1.0, verdict.message
    assert sum(rows for rows, _ in calls) == 64 * 32 and max(r for r, _ in calls) <= _ELBO_ROWS
    assert len({seed for _, seed in calls}) == len(calls) > 1


def test_a_broadcast_elbo_fails_with_its_shape() -> None:
    """(B, 1) - (B,) broadcasts to (B, B): the message says one value per image is needed."""
    def elbo(x, encoder, decoder):  # type: ignore[no-untyped-def]
        mu, logvar = encoder(x)
        recon = R.bernoulli_log_likelihood(x, decoder(R.reparameterize(mu, logvar)))
        return recon[:, None] - R.gaussian_kl(mu, logvar)

    verdict, _ = _run("elbo_estimator", ESTIMATOR, elbo=elbo)
    assert verdict.fraction == 0.0 and "one value per image" in verdict.message, verdict.message


class _ListEncoderVAE(R.VAE):  # type: ignore[misc, name-defined]
    """The reference, with an encoder that answers a list [mu, logvar]."""

    def __init__(self) -> None:
        super().__init__()
        forward = self.encoder.forward
        self.encoder.forward = lambda x: list(forward(x))  # type: ignore[method-assign]


class _OneTensorVAE(R.VAE):  # type: ignore[misc, name-defined]
    """The reference, with an encoder that answers mu and logvar concatenated."""

    def __init__(self) -> None:
        super().__init__()
        forward = self.encoder.forward
        self.encoder.forward = lambda x: torch.cat(forward(x), dim=1)  # type: ignore[method-assign]


def test_bounds_accept_a_list_and_fail_a_malformed_encoder_without_review() -> None:
    """A malformed answer is the student's failure, not a protocol error (needs review)."""
    verdict, _ = _run("likelihood_bounds", BOUNDS, VAE=_ListEncoderVAE)
    assert verdict.fraction == 1.0, verdict.message
    verdict, _ = _run("likelihood_bounds", BOUNDS, VAE=_OneTensorVAE)
    assert verdict.fraction == 0.0 and "pair of float tensors" in verdict.message
    assert "shape (32, 16)" in verdict.message, verdict.message


def test_the_grader_bounds_are_ordered_on_the_reference() -> None:
    verdict, _ = _run("likelihood_bounds", BOUNDS)
    assert verdict.fraction == 1.0 and verdict.details["elbo_nats"] < verdict.details[
        "iwae_nats"] < 0 and math.isfinite(verdict.details["iwae_nats"]), verdict.message


class _BatchNormEncoder(nn.Module):
    """Correct per LABS.md: BatchNorm1d (batch statistics only while training)."""

    def __init__(self, latent_dim: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ELU(),
                                 nn.Linear(32, 2 * latent_dim))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.net(x).chunk(2, dim=1)


def test_encoder_shapes_build_a_fresh_module_in_eval_mode() -> None:
    """Training-mode BatchNorm cannot take a batch of one; the grader uses models in eval."""
    params = {"module": {"class": "Encoder", "args": ["L"]},
              "inputs": {"x": {"kind": "binary", "shape": ["B", 1, 8, 8]}},
              "dims": {"B": [1, 1], "L": [1, 4]}, "outputs": [["B", "L"], ["B", "L"]],
              "max_examples": 3}
    verdict, _ = _run("output_shapes", params, Encoder=_BatchNormEncoder)
    assert verdict.fraction == 1.0, verdict.message
