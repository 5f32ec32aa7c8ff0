"""Unit tests of the pure parts of the flow checks (grader/checks/flows.py) and of the
flow instruments: finite-difference Jacobians, log-determinant verdicts, grids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from grader.checks.flows import (NOISE_FACTOR, flow_nll, grid, logdet_noise, logdet_problem,
                                 normal_log_prob, round_trip_error, rounding_floor, slogdet)
from grader.checks.numeric import central_jacobian
from grader.instruments.basic import redraw_parameters
from grader.instruments.flow import Jacobian

from conftest import reference_module

REPO = Path(__file__).resolve().parent.parent


R = reference_module("flow")


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
    jac = central_jacobian(lambda rows: c(rows)[0], x, 1e-4)
    s = torch.diagonal(jac, dim1=-2, dim2=-1).log()     # the log-scales (0 where mask = 1)
    _, exact = slogdet(jac)
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


# ---------------------------------------------------------------- issue 11: assume only LABS.md

class _ScaledCoupling(torch.nn.Module):
    """A coupling whose author keeps the mask as a frozen parameter and an ActNorm-like
    scale that the log-determinant takes the log of (correct while the scale is positive)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mask = torch.nn.Parameter((torch.arange(dim) % 2).float(), requires_grad=False)
        self.scale = torch.nn.Parameter(torch.ones(dim))
        self.net = torch.nn.Linear(dim, 2 * dim)
        torch.nn.init.zeros_(self.net.weight)
        torch.nn.init.zeros_(self.net.bias)


def test_redraw_keeps_frozen_parameters_and_the_sign_of_signed_ones() -> None:
    m = redraw_parameters(_ScaledCoupling(6), 0.3, 0).requires_grad_(False)
    assert torch.equal(m.mask, (torch.arange(6) % 2).float())
    assert bool((m.scale > 0).all()) and not bool((m.scale == 1).any())
    assert float(m.scale.log().std()) > 0.05          # moved, not only rescaled as a whole
    assert bool((m.net.weight != 0).all()) and bool((m.net.bias != 0).all())


def test_redraw_caps_a_wide_layer_at_unit_gain() -> None:
    narrow, wide = torch.nn.Linear(2, 400), torch.nn.Linear(400, 400)
    redraw_parameters(narrow, 0.3, 0).requires_grad_(False)
    redraw_parameters(wide, 0.3, 0).requires_grad_(False)
    assert abs(float(narrow.weight.std()) - 0.3) < 0.03      # std where fan_in <= 11
    assert abs(float(wide.weight.std()) - 400 ** -0.5) < 0.005
    assert abs(float(wide.bias.std()) - 0.3) < 0.05
    x = torch.randn(256, 400)
    gain = float(wide(x).std() / x.std())
    assert 0.7 < gain < 1.6                                 # N(0, 0.3^2) would give 6


def _scale_shift(coupling, v):
    """The reference coupling's (s, t) at v: its conditioner on the pass-through dims."""
    raw_s, t = coupling.net(v * coupling.mask).chunk(2, dim=-1)
    return 2.0 * torch.tanh(raw_s / 2.0) * (1.0 - coupling.mask), t


def _steep_reference(dim: int, seed: int):
    """A correct but steep RealNVP: the reference with 8 alternating couplings of 64 hidden
    units and every parameter from N(0, 0.5^2)."""
    flow = R.RealNVP(dim)
    parity = (torch.arange(dim) % 2).float()
    flow.couplings = torch.nn.ModuleList(
        R.AffineCoupling(dim, parity if i % 2 == 0 else 1.0 - parity, 64) for i in range(8))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return flow.eval()


def test_round_trip_of_a_steep_float32_flow_within_its_rounding_floor_bugs_not() -> None:
    x = torch.linspace(-10, 10, 24).reshape(4, 6)
    lost = 0.0
    for seed in range(6):
        flow = _steep_reference(6, seed)

        def forward(rows, flow=flow):
            return flow(rows)[0]

        def reversed_wrongly(z, couplings=flow.couplings):   # inverses in forward order
            for c in couplings:
                z, _ = c.inverse(z)
            return z

        def scale_sign(z, couplings=flow.couplings):          # exp(s) where exp(-s) belongs
            for c in reversed(couplings):
                s, t = _scale_shift(c, z)
                z = torch.where(c.mask.bool(), z, (z - t) * torch.exp(s))
            return z

        with torch.no_grad():
            y = forward(x)
            back = flow.inverse(y)
            err = round_trip_error(back, x)
            lost = max(lost, float(err.max()))
            floor = rounding_floor(forward, flow.inverse, x, y, back)
            assert bool((err <= 1e-4 + NOISE_FACTOR * floor).all())
            for wrong in (reversed_wrongly, scale_sign):
                bad = wrong(y)
                floor = rounding_floor(forward, wrong, x, y, bad)
                assert bool((round_trip_error(bad, x) > 1e-4 + NOISE_FACTOR * floor).any())
    assert lost > 1e-4        # a fixed float32 tolerance of 1e-4 would fail this correct flow


def test_logdet_noise_bounds_float32_slogdet_of_a_steep_flow_a_bug_not() -> None:
    x = torch.linspace(-10, 10, 18).reshape(3, 6)
    worst = 0.0
    for seed in range(4):
        flow = _steep_reference(6, seed)
        jac = Jacobian(flow)(x).double()
        with torch.no_grad():
            exact = flow.double()(x.double())[1]
        _, grader = slogdet(jac)
        noise = logdet_noise(jac, torch.finfo(torch.float32).eps)
        worst = max(worst, float((grader - exact).abs().max()))
        assert logdet_problem(exact, grader, 5e-2, noise=noise) is None
        s_mean = exact / 3                      # a logdet averaged over the transformed dims
        assert "off by" in (logdet_problem(s_mean, grader, 5e-2, noise=noise) or "")
    assert worst > 5e-2       # the grader's own float32 log|det J| is that far off


def test_logdet_noise_is_dimension_sized_for_triangular_jacobians_however_scaled() -> None:
    tri = torch.tril(torch.randn(5, 5, dtype=torch.float64)) + 3 * torch.eye(5)
    scaled = torch.diag(torch.tensor([1e-8, 1.0, 1e8, 1e3, 1e-3], dtype=torch.float64)) @ tri
    for jac in (tri, scaled):
        assert float(logdet_noise(jac[None], 1.0)) == pytest.approx(5.0, rel=1e-6)
    singular = torch.zeros(1, 3, 3, dtype=torch.float64)
    assert float(logdet_noise(singular, 1e-16)) == math.inf
