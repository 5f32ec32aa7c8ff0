"""Pure parts of the adversarial checks and the GAN instruments, without a kernel.

The grader's closed forms are checked against independent computations: the penalty of
the quadratic critic against double back-propagation through the instrument itself, and
the expected training step against the reference ``train_step`` run on the instruments.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grader.checks.adversarial import (_factor_note, _Float64Refused, _in_precision,
                                       _isolation_problem, _raised, expected_train_step,
                                       interpolation_weights, penalty_case, points_per_example,
                                       quadratic_penalty, recorded_rows)
from grader.checks.registry import PropertyFailure
from grader.errors import StudentException
from grader.instruments.gan import (ConstantGenerator, QuadraticCritic, UnitCritic,
                                    parameters_of, penalty_gradients, sgd)

from conftest import reference_module

REPO = Path(__file__).resolve().parent.parent


R = reference_module("gan")


def test_interpolation_weights_recover_one_e_per_row() -> None:
    case = penalty_case(5, (1, 8, 8), seed=3)
    e = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0], dtype=torch.float64).view(-1, 1, 1, 1)
    x_hat = e * case["real"] + (1 - e) * case["fake"]
    got, residual = interpolation_weights(x_hat, case["real"], case["fake"])
    assert torch.allclose(got, e.flatten(), atol=1e-12) and residual < 1e-12
    _, off = interpolation_weights(x_hat + 0.01, case["real"], case["fake"])
    assert off > 1e-3


def test_quadratic_penalty_matches_double_backprop_through_the_instrument() -> None:
    case = penalty_case(4, (1, 8, 8), seed=7)
    critic = QuadraticCritic(case["a"], case["w"], 0.1)
    torch.manual_seed(0)
    penalty = R.gradient_penalty(critic, case["real"], case["fake"])
    x_hat = critic.inputs[-1]
    value, ga, gw = quadratic_penalty(x_hat, case["a"], case["w"])
    assert abs(float(penalty.detach()) - value) < 1e-10
    grads = penalty_gradients(critic, penalty)
    assert torch.allclose(grads["a"], ga, atol=1e-10) and torch.allclose(grads["w"], gw, atol=1e-10)
    e, residual = interpolation_weights(x_hat, case["real"], case["fake"])
    assert residual < 1e-12 and float(e.max() - e.min()) > 0


def _penalty_per_example(critic, real, fake):
    """A correct penalty that calls the critic once per example, last example first."""
    terms = []
    for i in reversed(range(len(real))):
        e = torch.rand(1, dtype=real.dtype)
        x = (e * real[i:i + 1] + (1 - e) * fake[i:i + 1]).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x), x, grad_outputs=torch.ones(1, dtype=real.dtype),
                                   create_graph=True)
        terms.append((g.reshape(-1).norm() - 1) ** 2)
    return torch.stack(terms).mean()


def test_points_per_example_accept_any_grouping_of_the_critic_calls() -> None:
    """Issue 11: a penalty that calls the critic once per example lost 4 points."""
    case = penalty_case(5, (1, 8, 8), seed=11)
    critic = QuadraticCritic(case["a"], case["w"], 0.1)
    torch.manual_seed(3)
    penalty = _penalty_per_example(critic, case["real"], case["fake"])
    assert [tuple(x.shape) for x in critic.inputs] == [(1, 1, 8, 8)] * 5
    x_hat = points_per_example(recorded_rows(critic.inputs, (1, 8, 8)), case["real"],
                               case["fake"])
    e, residual = interpolation_weights(x_hat, case["real"], case["fake"])
    assert residual < 1e-12 and float(e.min()) >= 0 and float(e.max()) <= 1
    value, ga, gw = quadratic_penalty(x_hat, case["a"], case["w"])
    assert abs(float(penalty.detach()) - value) < 1e-12
    grads = penalty_gradients(critic, penalty)
    assert torch.allclose(grads["a"], ga, atol=1e-12) and torch.allclose(grads["w"], gw, atol=1e-12)


def test_points_per_example_take_the_last_point_on_each_line_and_show_misses() -> None:
    case = penalty_case(3, (1, 8, 8), seed=5)
    real, fake = case["real"], case["fake"]
    e = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64).view(-1, 1, 1, 1)
    x_hat = e * real + (1 - e) * fake
    seen = [real[2:].reshape(1, 64), x_hat[1:], torch.zeros(2, 3), real[:0], x_hat[:1]]
    rows = recorded_rows(seen, (1, 8, 8))
    assert rows.shape == (4, 1, 8, 8)
    assert torch.equal(points_per_example(rows, real, fake), x_hat)
    assert torch.equal(points_per_example(recorded_rows([real], (1, 8, 8)), real, fake), real)
    off = points_per_example(recorded_rows([x_hat + 0.05], (1, 8, 8)), real, fake)
    assert interpolation_weights(off, real, fake)[1] > 1e-3
    assert recorded_rows([torch.zeros(4, 8)], (1, 8, 8)) is None
    assert recorded_rows(None, (1, 8, 8)) is None


def test_factor_note_names_a_whole_multiple_only() -> None:
    assert "10 times" in _factor_note(10 * 0.37, 0.37)
    assert _factor_note(0.37, 0.37) == "" and _factor_note(0.5, 0.37) == ""
    assert _factor_note(None, 0.37) == "" and _factor_note(1.0, 0.0) == ""


def test_in_precision_falls_back_to_float32_only_where_float64_raises() -> None:
    """A penalty built with torch.lerp and a float32 weight is right for float32 inputs."""
    seen: list[torch.dtype] = []

    def lerp_penalty(dtype: torch.dtype) -> None:
        seen.append(dtype)
        real = torch.rand(2, 1, 8, 8, dtype=dtype)
        try:
            torch.lerp(real, real, torch.rand(2, 1, 1, 1))
        except RuntimeError as exc:
            raise _raised(StudentException("RuntimeError", str(exc), ""), dtype, {}) from None

    state: dict = {}
    _in_precision(state, lerp_penalty)
    _in_precision(state, lerp_penalty)
    assert seen == [torch.float64, torch.float32, torch.float32]
    seen.clear()
    plain: dict = {}
    _in_precision(plain, seen.append)
    assert seen == [torch.float64] and "dtype" not in plain
    assert isinstance(_raised(StudentException("E", "v", ""), torch.float64, {}), _Float64Refused)
    failure = _raised(StudentException("ValueError", "bad", ""), torch.float32, {"batch": 2})
    assert isinstance(failure, PropertyFailure) and "ValueError: bad" in failure.message


def test_penalty_gradients_reports_a_penalty_without_graph() -> None:
    ones = torch.ones(4, dtype=torch.float64)
    critic = QuadraticCritic(ones, 0 * ones)
    assert "error" in penalty_gradients(critic, torch.tensor(1.0))
    assert "error" in penalty_gradients(critic, 1.0)


def _bug_leak(G, D, opt_G, opt_D, real):
    opt_G.zero_grad()
    opt_D.zero_grad()
    fake = G(torch.randn(len(real), G.latent_dim, dtype=real.dtype))
    d_loss = R.discriminator_loss(D(real), D(fake))
    d_loss.backward(retain_graph=True)
    opt_D.step()
    g_loss = R.generator_loss(D(fake))
    g_loss.backward()
    opt_G.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def _bug_g_first(G, D, opt_G, opt_D, real):
    fake = G(torch.randn(len(real), G.latent_dim, dtype=real.dtype))
    g_loss = R.generator_loss(D(fake))
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    d_loss = R.discriminator_loss(D(real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def _run(step, real, theta, w, b, lr_g, lr_d):
    G, D = ConstantGenerator(theta, 3), UnitCritic(w, b)
    out = step(G, D, sgd(G, lr_g), sgd(D, lr_d), real)
    return out, parameters_of(G), parameters_of(D)


@pytest.mark.parametrize(("lr_g", "lr_d"), [(0.0, 0.1), (0.1, 0.0), (0.1, 0.1)])
def test_expected_train_step_equals_the_reference_step_on_instruments(lr_g, lr_d) -> None:
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(5, 1, 8, 8, generator=gen, dtype=torch.float64)
    theta = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(64, generator=gen, dtype=torch.float64)
    w, b = w / w.norm(), torch.tensor(0.4, dtype=torch.float64)
    exp = expected_train_step(real, theta, w, b, lr_g, lr_d, R.discriminator_loss,
                              R.generator_loss)
    out, p_g, p_d = _run(R.train_step, real, theta, w, b, lr_g, lr_d)
    assert torch.allclose(p_g["theta"], exp["theta"], atol=1e-12)
    assert torch.allclose(p_d["w"], exp["w"], atol=1e-12)
    assert abs(out["d_loss"] - exp["d_loss"]) < 1e-12 and abs(out["g_loss"] - exp["g_loss"]) < 1e-12
    _, leak_g, _ = _run(_bug_leak, real, theta, w, b, lr_g, lr_d)
    assert torch.allclose(leak_g["theta"], exp["theta_leak"], atol=1e-12)
    if lr_g > 0:
        assert not torch.allclose(leak_g["theta"], exp["theta"], atol=1e-6)
    if lr_g > 0 and lr_d > 0:
        _, first_g, _ = _run(_bug_g_first, real, theta, w, b, lr_g, lr_d)
        assert torch.allclose(first_g["theta"], exp["theta_old_d"], atol=1e-12)
        assert not torch.allclose(first_g["theta"], exp["theta"], atol=1e-6)


def _step_with_penalty(G, D, opt_G, opt_D, real):
    """A correct train_step: D's fakes from G.sample, 10 x the gradient penalty in D's loss."""
    fake = G.sample(len(real))
    d_loss = R.discriminator_loss(D(real), D(fake)) + 10 * R.gradient_penalty(D, real, fake)
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    g_loss = R.generator_loss(D(G(torch.randn(len(real), G.latent_dim, dtype=real.dtype))))
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def _swapped_steps(G, D, opt_G, opt_D, real):
    """Issue 11's bug: opt_G.step() after D's backward, opt_D.step() after G's."""
    fake = G(torch.randn(len(real), G.latent_dim, dtype=real.dtype))
    d_loss = R.discriminator_loss(D(real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_G.step()
    g_loss = R.generator_loss(D(fake))
    opt_G.zero_grad()
    g_loss.backward()
    opt_D.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def test_unit_critic_lets_a_gradient_penalty_add_nothing_at_every_step() -> None:
    """With the unit critic, a penalty in D's loss changes no step, also after D moved w."""
    gen = torch.Generator().manual_seed(2)
    real = torch.rand(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    theta = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(64, generator=gen, dtype=torch.float64)
    w, b = w / w.norm(), torch.tensor(-0.3, dtype=torch.float64)
    G, D = ConstantGenerator(theta, 3), UnitCritic(w, b)
    opt_g, opt_d = sgd(G, 0.1), sgd(D, 0.1)
    th, wv, bv = theta, w, b
    for _ in range(3):
        exp = expected_train_step(real, th, wv, bv, 0.1, 0.1, R.discriminator_loss,
                                  R.generator_loss)
        out = _step_with_penalty(G, D, opt_g, opt_d, real)
        got_g, got_d = parameters_of(G), parameters_of(D)
        assert torch.allclose(got_g["theta"], exp["theta"], atol=1e-12)
        assert torch.allclose(got_d["w"], exp["w"], atol=1e-12)
        assert abs(out["d_loss"] - exp["d_loss"]) < 1e-12
        th, wv, bv = exp["theta"], exp["w"], exp["b"]
    assert abs(float(D.w.detach().norm()) - 1) > 1e-3   # D's steps moved w off the sphere


def test_swapped_optimiser_steps_leave_g_still_and_step_d_on_both_losses() -> None:
    gen = torch.Generator().manual_seed(4)
    real = torch.rand(3, 1, 8, 8, generator=gen, dtype=torch.float64)
    theta = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(64, generator=gen, dtype=torch.float64)
    w, b = w / w.norm(), torch.tensor(0.5, dtype=torch.float64)
    exp = expected_train_step(real, theta, w, b, 0.1, 0.1, R.discriminator_loss,
                              R.generator_loss)
    _, p_g, p_d = _run(_swapped_steps, real, theta, w, b, 0.1, 0.1)
    assert torch.equal(p_g["theta"], theta)
    assert not torch.allclose(p_d["w"], exp["w"], atol=1e-6)


def test_constant_generator_samples_without_a_graph() -> None:
    G = ConstantGenerator(torch.rand(1, 1, 8, 8, dtype=torch.float64), 3)
    x = G.sample(5)
    assert x.shape == (5, 1, 8, 8) and not x.requires_grad and torch.equal(x[4], G.theta[0])
    y = G(torch.zeros(2, 3))
    assert y.requires_grad and y.data_ptr() != G.theta.data_ptr()


def test_isolation_problem_names_the_network_that_moved() -> None:
    same = {"w": torch.zeros(2)}
    moved = {"w": torch.ones(2)}
    out = {"d_loss": 1.0, "g_loss": 0.5}
    assert _isolation_problem(out, {"generator": same, "discriminator": same},
                              {"generator": same, "discriminator": moved}, 0.0, 0.1) is None
    why = _isolation_problem(out, {"generator": same, "discriminator": same},
                             {"generator": moved, "discriminator": moved}, 0.0, 0.1)
    assert why and "lr_G = 0" in why
    assert "Python float" in _isolation_problem({"d_loss": torch.tensor(1.0), "g_loss": 0.5},
                                                {}, {}, 0.0, 0.1)
    assert "not finite" in _isolation_problem({"d_loss": float("nan"), "g_loss": 0.5},
                                              {}, {}, 0.0, 0.1)
