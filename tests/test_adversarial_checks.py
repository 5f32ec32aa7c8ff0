"""Pure parts of the adversarial checks and the GAN instruments, without a kernel.

The grader's closed forms are checked against independent computations: the penalty of
the quadratic critic against double back-propagation through the instrument itself, and
the expected training step against the reference ``train_step`` run on the instruments.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from grader.checks.adversarial import (_isolation_problem, expected_train_step,
                                       interpolation_weights, penalty_case, quadratic_penalty)
from grader.instruments.basic import AffineCritic
from grader.instruments.gan import (ConstantGenerator, QuadraticCritic, parameters_of,
                                    penalty_gradients, sgd)

REPO = Path(__file__).resolve().parent.parent


def _reference():
    spec = importlib.util.spec_from_file_location("gan_ref", REPO / "reference" / "gan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _reference()


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
    G, D = ConstantGenerator(theta, 3), AffineCritic(w, b)
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
