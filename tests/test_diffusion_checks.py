"""Pure parts of the diffusion checks and the diffusion instruments, without a kernel
(except the last test: ``sample_fid`` drawing from a ``sample(model, n, betas)`` function).

The grader's closed forms are checked against independent computations: the chain law
against Monte Carlo runs of the reference sampler on the Gaussian instrument, the exact
loss against the reference loss on the point-mass instrument, the posterior variance
against the published values (diffusers' DDPM scheduler test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from grader.checks.compare import broadcast_outputs, normal_moment_test
from grader.checks.diffusion import (gaussian_case, gaussian_chain_law, last_step_mean,
                                     point_mass_case, posterior_variance)
from grader.checks.registry import REGISTRY, CheckContext
from grader.protocol import Name
from grader.rubric import load_rubric
from grader.instruments.diffusion import GaussianDenoiser, PointMassDenoiser, recorded_steps

from conftest import reference_module

REPO = Path(__file__).resolve().parent.parent


R = reference_module("diffusion")
BETAS = R.linear_beta_schedule(1000)


def test_posterior_variance_has_the_published_values() -> None:
    assert posterior_variance(BETAS, 0) == 0.0
    assert posterior_variance(BETAS, 487) == pytest.approx(0.0097916, rel=1e-4)
    assert posterior_variance(BETAS, 999) == pytest.approx(0.0199999835, rel=1e-6)
    assert float(torch.cumprod(1 - BETAS.double(), 0)[-1]) == pytest.approx(4.0358e-5, rel=1e-4)
    _, var = R.q_posterior_mean_variance(torch.zeros(1, 1, 8, 8, dtype=torch.float64),
                                         torch.zeros(1, 1, 8, 8, dtype=torch.float64),
                                         torch.tensor([487]), BETAS.double())
    assert float(var.flatten()[0]) == pytest.approx(posterior_variance(BETAS, 487), rel=1e-9)


def test_broadcast_outputs_accepts_broadcastable_variances_only() -> None:
    mean, var = torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 1, 1)
    (m, v), why = broadcast_outputs((mean, var), (mean, var), (3, 1, 8, 8))
    assert why is None and v.shape == (3, 1, 8, 8)
    _, why = broadcast_outputs((mean, torch.ones(3, 2)), (mean, var), (3, 1, 8, 8))
    assert why and "output[1]" in why and "does not broadcast" in why
    _, why = broadcast_outputs(mean, (mean, var), (3, 1, 8, 8))
    assert why and "tuple of 2" in why


@pytest.mark.parametrize("seed", [0, 1])
def test_the_reference_loss_is_exact_on_the_point_mass_instrument(seed: int) -> None:
    case = point_mass_case((1, 8, 8), seed)
    ab = torch.cumprod(1 - BETAS.double(), 0)
    model = PointMassDenoiser(case["c"], case["delta"], ab)
    x0 = case["c"].expand(200, 1, 8, 8).float().contiguous()
    torch.manual_seed(seed)
    got = float(R.diffusion_loss(model, x0, BETAS))
    want = float((case["delta"].float().double() ** 2).mean())
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    steps = recorded_steps(model)
    assert steps["calls"] == 1 and steps["steps"].numel() == 200
    assert steps["steps"].unique().numel() > 100


def test_a_forward_process_with_alpha_t_moves_the_point_mass_loss() -> None:
    case = point_mass_case((1, 8, 8), 0)
    ab = torch.cumprod(1 - BETAS.double(), 0)
    model = PointMassDenoiser(case["c"], case["delta"], ab)
    alphas = 1 - BETAS
    x0 = case["c"].expand(200, 1, 8, 8).float().contiguous()
    torch.manual_seed(0)
    t = torch.randint(0, 1000, (200,))
    noise = torch.randn_like(x0)
    x_t = alphas[t].sqrt().view(-1, 1, 1, 1) * x0 + (1 - ab[t].float()).sqrt().view(
        -1, 1, 1, 1) * noise
    bad = float(((model(x_t, t) - noise) ** 2).mean())
    want = float((case["delta"] ** 2).mean())
    assert abs(bad - want) > 0.05


def test_gaussian_chain_law_matches_a_monte_carlo_run_of_the_reference_sampler() -> None:
    case = gaussian_case((1, 8, 8), seed=0)
    ab = torch.cumprod(1 - BETAS.double(), 0)
    model = GaussianDenoiser(case["mu"], case["s"], ab)
    torch.manual_seed(0)
    out = R.sample(model, 2000, BETAS)
    mean, std = gaussian_chain_law(case["mu"][0], case["s"][0], BETAS)
    # the exact chain law is the data law up to the discretisation of the chain
    assert torch.allclose(mean, case["mu"][0], atol=2e-3)
    assert torch.allclose(std, case["s"][0], rtol=0.1)
    res = normal_moment_test(out.double(), mean, std, 1e-6)
    assert res["mean_ok"] and res["var_ok"], res
    assert out.abs().max() < 1           # a clamping sampler is not marked down


def test_gaussian_chain_law_rejects_a_wrong_sigma_but_not_noise_at_t0() -> None:
    """sigma_t = beta_t (not sqrt(beta_t)) is caught by the law; the noise of a last step
    (std sqrt(beta_0) = 0.01 on s >= 0.05) is not, at n = 2000: the separate ``t0`` check
    (the output against the exact mean of the last step) exists for that."""
    case = gaussian_case((1, 8, 8), seed=0)
    ab = torch.cumprod(1 - BETAS.double(), 0)
    model = GaussianDenoiser(case["mu"], case["s"], ab)
    mean, std = gaussian_chain_law(case["mu"][0], case["s"][0], BETAS)
    for sigma, caught in ((BETAS, True), (None, False)):
        torch.manual_seed(1)
        x = torch.randn(2000, 1, 8, 8)
        for t in range(999, -1, -1):
            if sigma is None:                           # the reference, plus noise at t = 0
                x = R.p_sample(model, x, t, BETAS)
                x = x + BETAS[0].sqrt() * torch.randn_like(x) if t == 0 else x
            else:                                       # the mean, plus beta_t z for t > 0
                eps = model(x, torch.full((len(x),), t))
                x = (x - BETAS[t] / (1 - ab[t]).sqrt().float() * eps) / (1 - BETAS[t]).sqrt()
                x = x + sigma[t] * torch.randn_like(x) if t > 0 else x
        res = normal_moment_test(x.double(), mean, std, 1e-6)
        assert (not res["var_ok"]) == caught, (sigma is None, res["worst_z_var"])


def test_last_step_mean_is_the_reference_p_sample_at_t0_by_either_route() -> None:
    """The eps form (the reference) and the x0-hat / posterior-mean form agree with the
    grader's closed form to float64 rounding, on the t0 item's schedule and the default."""
    for args in ((), (0.01, 0.02)):
        betas = R.linear_beta_schedule(50, *args).double()
        ab = torch.cumprod(1 - betas, 0)
        for seed in range(20):
            case = gaussian_case((1, 8, 8), seed)
            model = GaussianDenoiser(case["mu"], case["s"], ab)
            x = case["mu"] + case["s"] * torch.randn((8, 1, 8, 8), dtype=torch.float64,
                                                     generator=torch.Generator().manual_seed(seed))
            want = last_step_mean(x, case["mu"], case["s"], betas)
            assert torch.allclose(R.p_sample(model, x, 0, betas), want, rtol=0, atol=1e-12)
            eps = model(x, torch.zeros(8, dtype=torch.long))
            x0_hat = (x - (1 - ab[0]).sqrt() * eps) / ab[0].sqrt()
            mean, _ = R.q_posterior_mean_variance(x0_hat, x, torch.zeros(8, dtype=torch.long),
                                                  betas)
            assert torch.allclose(mean, want, rtol=0, atol=1e-12)


class _InProcessKernel:
    """Just enough of KernelProxy to run ``reverse_chain_gaussian`` on plain functions: the
    grader's seed reaches torch's global generator as in the sandboxed kernel."""

    def __init__(self, functions: dict[str, object]) -> None:
        self.functions = functions

    def get(self, target: object, keep: bool = False) -> object:
        return self.functions[target.name] if isinstance(target, Name) else target

    def instrument(self, module: str, name: str, *args: object) -> object:
        assert (module, name) == ("diffusion", "GaussianDenoiser")
        return GaussianDenoiser(*args)

    def call(self, target: object, *args: object, seed: int | None = None,
             keep: bool = False) -> object:
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            return self.get(target)(*args)


def _t0_verdict_of(p_sample: object):  # type: ignore[no-untyped-def]
    rubric = load_rubric(REPO / "rubrics" / "diffusion.yaml")
    item = next(i for i in rubric.items if i.id == "p_sample_no_noise_at_t0")
    ctx = CheckContext(_InProcessKernel({"p_sample": p_sample}), R, seed=0)  # type: ignore[arg-type]
    return REGISTRY["reverse_chain_gaussian"].fn(ctx, dict(item.params))


def _p_sample_noise_at_t0(draw):  # type: ignore[no-untyped-def]
    """The reference's p_sample, plus sqrt(beta_0) z at t = 0 with z from ``draw(shape)``."""
    def p_sample(model, x_t, t, betas):  # type: ignore[no-untyped-def]
        extra = betas[t].sqrt() * draw(x_t.shape) if t == 0 else 0.0
        return R.p_sample(model, x_t, t, betas) + extra
    return p_sample


def test_the_t0_item_passes_correct_samplers_whatever_their_generator() -> None:
    """Generator-free: the reference, and noise drawn from a private generator but multiplied
    by 0 at t = 0 (torch.where), keep the point."""
    private = torch.Generator().manual_seed(3)

    def where_zero(model, x_t, t, betas):  # type: ignore[no-untyped-def]
        z = torch.randn(x_t.shape, generator=private)
        sigma = torch.where(torch.tensor(t > 0), betas[t].sqrt(), torch.zeros(()))
        return R.p_sample(model, x_t, 0, betas) + sigma * z

    for fn in (R.p_sample, where_zero):
        verdict = _t0_verdict_of(fn)
        assert verdict.fraction == 1.0, verdict.message


def test_the_t0_item_catches_noise_at_t0_from_any_generator() -> None:
    """Noise from the global generator (two seeds differ) and from a generator the sampler
    reseeds itself at every call (two seeds agree: reseeding torch cannot see it) both fail."""
    verdict = _t0_verdict_of(_p_sample_noise_at_t0(lambda shape: torch.randn(shape)))
    assert verdict.fraction == 0.0 and "adds noise at t = 0" in verdict.message, verdict.message
    reseeded = _p_sample_noise_at_t0(
        lambda shape: torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    verdict = _t0_verdict_of(reseeded)
    assert verdict.fraction == 0.0 and "must return the mean" in verdict.message, verdict.message


def _posterior_verdict_of(posterior: object, **override: float):  # type: ignore[no-untyped-def]
    rubric = load_rubric(REPO / "rubrics" / "diffusion.yaml")
    item = next(i for i in rubric.items if i.id == "posterior_matches_reference")
    kernel = _InProcessKernel({"q_posterior_mean_variance": posterior})
    ctx = CheckContext(kernel, R, seed=0)  # type: ignore[arg-type]
    return REGISTRY["matches_reference"].fn(ctx, {**item.params, **override})


def _posterior_with(coefficients_dtype: torch.dtype, swap: bool = False):  # type: ignore[no-untyped-def]
    """The reference's posterior with its schedule coefficients computed in
    ``coefficients_dtype`` and applied to x0, x_t in theirs; ``swap`` puts sqrt(alpha_t) on
    x0 and sqrt(alpha_bar_{t-1}) on x_t (a bug)."""
    def posterior(x0, x_t, t, betas):  # type: ignore[no-untyped-def]
        b = betas.to(coefficients_dtype)
        ab = torch.cumprod(1 - b, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=b.dtype), ab[:-1]])
        shape = (-1,) + (1,) * (x0.dim() - 1)
        bt, at, abar, prev = (v[t].view(shape).to(x0.dtype) for v in (b, 1 - b, ab, ab_prev))
        c0, ct = (at.sqrt(), prev.sqrt()) if swap else (prev.sqrt(), at.sqrt())
        mean = c0 * bt / (1 - abar) * x0 + ct * (1 - prev) / (1 - abar) * x_t
        return mean, bt * (1 - prev) / (1 - abar)
    return posterior


def test_the_posterior_item_judges_float32_coefficients_as_float32_code() -> None:
    """Coefficients in float32 applied to float64 inputs give float64 outputs with float32
    rounding (3e-5 at beta = 2^-13): bit-identical to the reference on float32 inputs, so
    right; a swapped coefficient stays wrong at either precision."""
    verdict = _posterior_verdict_of(_posterior_with(torch.float32))
    assert verdict.fraction == 1.0, verdict.message
    # float64 tolerances no float32 rounding meets: every input needs the float32 rerun
    verdict = _posterior_verdict_of(_posterior_with(torch.float32), rtol=1e-13, atol=1e-13)
    assert verdict.fraction == 1.0, verdict.message
    assert verdict.details.get("float32_inside", 0) >= 1, verdict.details
    assert _posterior_verdict_of(_posterior_with(torch.float64)).fraction == 1.0
    verdict = _posterior_verdict_of(_posterior_with(torch.float32, swap=True))
    assert verdict.fraction == 0.0 and "off by" in verdict.message, verdict.message


def test_the_rubric_passes_images_as_4d_tensors_only() -> None:
    """LABS.md: an image is always (B, C, H, W); the grader varies the sizes, never the rank
    (a q_sample written with view(-1, 1, 1, 1) is right)."""
    rubric = load_rubric(REPO / "rubrics" / "diffusion.yaml")
    seen = 0
    for item in rubric.items:
        for name, spec in (item.params.get("inputs") or {}).items():
            if name in ("x0", "x_t", "noise"):
                seen += 1
                assert len(spec["shape"]) == 4, (item.id, name, spec["shape"])
    assert seen >= 5


KERNEL_RUBRIC = """assignment: diffusion
reference: reference/diffusion.py
checkpoints: []
items:
  - {id: fid, points: 1, visibility: public, check: sample_fid, partial: proportional,
     params: {model: {class: Denoiser}, sampler: {function: sample, T: 1000},
              value_range: [-1, 1], n: 360, data: {split: test, form: continuous},
              full_at: 5.0, zero_at: 50.0}}
"""
TEST_DIGITS_IF_REFERENCE_BETAS = '''
from grader.data import digits as _digits
def sample(model, n, betas):
    want = torch.linspace(1e-4, 0.02, 1000)
    assert isinstance(model, Denoiser) and betas.shape == (1000,), betas.shape
    assert torch.allclose(betas, want), "not the reference betas"
    return _digits("test", "continuous")[:n] * 2 - 1
'''


@pytest.mark.kernel
def test_sample_fid_draws_from_a_sample_function_with_the_reference_betas(
        tmp_path: Path) -> None:
    import nbformat

    from grader.pipeline import grade

    course = tmp_path / "course"
    (course / "rubrics").mkdir(parents=True)
    (course / "rubrics" / "diffusion.yaml").write_text(KERNEL_RUBRIC)
    shutil.copytree(REPO / "reference", course / "reference")
    sub = tmp_path / "sub"
    sub.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "diffusion"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "diffusion.py").read_text()),
                nbformat.v4.new_code_cell(TEST_DIGITS_IF_REFERENCE_BETAS)]
    nbformat.write(nb, sub / "diffusion.ipynb")
    item = grade(sub, course=course)["items"][0]
    assert item["outcome"] == "passed" and item["details"]["fid"] < 1e-6, item
    # out of range: a sampler returning [-2, 2] fails the range part, naming the call
    nb.cells.append(nbformat.v4.new_code_cell(
        "def sample(model, n, betas):\n    return _digits('test', 'continuous')[:n] * 4 - 2"))
    nbformat.write(nb, sub / "diffusion.ipynb")
    item = grade(sub, course=course)["items"][0]
    assert item["outcome"] == "failed" and "within [-1, 1]" in item["message"], item["message"]
