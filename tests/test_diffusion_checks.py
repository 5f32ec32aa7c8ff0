"""Pure parts of the diffusion checks and the diffusion instruments, without a kernel
(except the last test: ``sample_fid`` drawing from a ``sample(model, n, betas)`` function).

The grader's closed forms are checked against independent computations: the chain law
against Monte Carlo runs of the reference sampler on the Gaussian instrument, the exact
loss against the reference loss on the point-mass instrument, the posterior variance
against the published values (diffusers' DDPM scheduler test).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from grader.checks.compare import normal_moment_test
from grader.checks.diffusion import (broadcast_outputs, gaussian_case, gaussian_chain_law,
                                     point_mass_case, posterior_variance)
from grader.instruments.diffusion import GaussianDenoiser, PointMassDenoiser, recorded_steps

REPO = Path(__file__).resolve().parent.parent


def _reference():
    spec = importlib.util.spec_from_file_location("diffusion_ref",
                                                  REPO / "reference" / "diffusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _reference()
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
    (two seeds, same output) exists for that."""
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
