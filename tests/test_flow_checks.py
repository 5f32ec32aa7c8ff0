"""Unit tests of the pure parts of the flow checks (grader/checks/flows.py) and of the
flow instruments: finite-difference Jacobians, log-determinant verdicts, grids."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from grader.checks.flows import flow_nll, grid, logdet_problem, normal_log_prob, slogdet
from grader.checks.numeric import central_jacobian
from grader.instruments.basic import redraw_parameters
from grader.instruments.flow import Jacobian

REPO = Path(__file__).resolve().parent.parent


def _reference():
    spec = importlib.util.spec_from_file_location("flow_ref", REPO / "reference" / "flow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _reference()


def _coupling(dim: int = 5, seed: int = 0):
    mask = (torch.arange(dim) % 2).float()
    return redraw_parameters(R.AffineCoupling(dim, mask, 16), 0.3, seed).double().eval()


def test_normal_log_prob_matches_torch() -> None:
    z = torch.randn(7, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(normal_log_prob(z), expected, atol=1e-12)
    assert float(normal_log_prob(torch.zeros(1, 2))) == -math.log(2 * math.pi)


def test_central_jacobian_of_a_linear_map_is_its_matrix() -> None:
    a = torch.randn(4, 4, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64)
    jac = central_jacobian(lambda rows: rows @ a.T, x, 1e-4)
    assert jac.shape == (3, 4, 4)
    assert torch.allclose(jac, a.expand(3, 4, 4), atol=1e-9)


def test_reference_coupling_logdet_matches_finite_differences_and_autograd() -> None:
    c = _coupling()
    x = 10 * (2 * torch.rand(4, 5, dtype=torch.float64) - 1)
    y, ld = c(x)
    fd = central_jacobian(lambda rows: c(rows)[0], x, 1e-4)
    ad = Jacobian(c)(x)
    assert torch.allclose(fd, ad.double(), atol=1e-6)
    sign, exact = slogdet(ad)
    assert bool((sign != 0).all())
    assert logdet_problem(ld, exact, 1e-4) is None
    back, ld_inv = c.inverse(y)
    assert torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(ld_inv, -ld, atol=1e-12)


def test_logdet_problem_names_mean_instead_of_sum_and_shapes() -> None:
    c = _coupling()
    x = torch.randn(3, 5, dtype=torch.float64)
    s = c._scale_shift(x * c.mask)[0].detach()
    _, exact = slogdet(central_jacobian(lambda rows: c(rows)[0], x, 1e-4))
    why = logdet_problem(s.mean(-1), exact, 1e-4)
    assert why is not None and "off by" in why
    why = logdet_problem(s, exact, 1e-4)
    assert why is not None and "shape (3, 5)" in why and "summed" in why
    assert "float tensor" in logdet_problem(None, exact, 1e-4)
    assert "not finite" in logdet_problem(torch.full((3,), float("nan")), exact, 1e-4)


def test_reference_realnvp_log_prob_is_base_plus_logdet() -> None:
    flow = redraw_parameters(R.RealNVP(3), 0.3, 1).double().eval()
    x = torch.randn(6, 3, dtype=torch.float64)
    z, ld = flow(x)
    assert torch.allclose(flow.log_prob(x), -flow_nll(z, ld), atol=1e-12)
    assert torch.allclose(flow.inverse(z), x, atol=1e-10)
    assert not bool((z == x).all(0).any())


def test_grid_midpoints_integrate_a_gaussian_to_one() -> None:
    points, cell = grid([[-6, 6], [-6, 6]], 200)
    assert points.shape == (40000, 2) and math.isclose(cell, (12 / 200) ** 2)
    mass = float(torch.exp(normal_log_prob(points)).sum() * cell)
    assert abs(mass - 1.0) < 1e-6
