"""Pure parts of the causality, torch-module and autoregressive checks, and one kernel test:
a float32-only module is graded in float32 without penalty; an over-masked attention fails
while a zero-initialised one (no gradient at all until its parameters are re-drawn) and a
stack of zero-initialised convolutions pass."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from scipy import stats

from grader.checks.autoregressive import bernoulli_log_prob, poisson_binomial_pvalues
from grader.checks.causality import (allowed_mask, backprop_dependence, confirm_by_change,
                                     confirm_missing, dependence, first_violation, positions,
                                     required, unpositions, unseen)
from grader.checks.modules import _unexpected_keys, arrange, library_module

REPO = Path(__file__).resolve().parent.parent


def test_allowed_mask_offsets() -> None:
    assert allowed_mask(3, 0).tolist() == [[True, False, False], [True, True, False],
                                           [True, True, True]]
    assert allowed_mask(3, 1).tolist() == [[False, False, False], [True, False, False],
                                           [True, True, False]]


def test_positions_round_trip_and_dependence() -> None:
    x = torch.arange(2 * 3 * 5.0).reshape(2, 3, 5)
    p = positions(x, 2)
    assert p.shape == (2, 5, 3) and torch.equal(unpositions(p, x, 2), x)
    assert positions(x, "flat").shape == (2, 15, 1)
    g = torch.zeros(2, 3, 5)
    g[1, 2, 4] = -0.5
    dep = dependence(g, x, 2)
    assert dep.shape == (2, 5) and dep[1, 4] == 0.5 and dep.sum() == 0.5
    assert dependence(None, x, 2).abs().sum() == 0


def _probe(f):  # type: ignore[no-untyped-def]
    """A local stand-in for the kernel's call_with_grad: for K stacked cotangents, the K
    gradients of <f(x), cot>, stacked (None where none reaches x)."""
    def probe(x: torch.Tensor, cots: torch.Tensor) -> torch.Tensor | None:
        x = x.detach().clone().requires_grad_(True)
        y = f(x)
        grads = [torch.autograd.grad(y, x, c, allow_unused=True, retain_graph=True)[0]
                 for c in cots]
        return None if grads[0] is None else torch.stack(grads)
    return probe


def test_first_violation_needs_exact_zeros_across_rows_and_in_the_future() -> None:
    allowed = allowed_mask(3, 0)
    dep = torch.zeros(3, 2, 3, dtype=torch.float64)
    for t in range(3):
        dep[t, t % 2, :t + 1] = 1.0
    assert first_violation(dep, [0, 1, 2], allowed) is None
    leak = dep.clone()
    leak[1, 1, 2] = 1e-30                                # output 1 (row 1) sees input 2
    assert first_violation(leak, [0, 1, 2], allowed) == ("leak", 1, 1, [2])
    cross = dep.clone()
    cross[2, 1, 0] = 1e-30                               # output 2 (row 0) sees row 1
    assert first_violation(cross, [0, 1, 2], allowed) == ("row", 2, 0, [1])


def test_required_positions_by_rule_and_offset() -> None:
    assert required(3, 0, "current") == {0: [0], 1: [1], 2: [2]}
    assert required(3, 1, "current") == {}
    assert required(3, 1, "all") == {1: [0], 2: [0, 1]}
    assert required(3, 0, "none") == {}


def test_backprop_dependence_reads_the_jacobian_structure() -> None:
    a = torch.arange(1.0, 17.0, dtype=torch.float64).reshape(4, 4)

    def lower(x: torch.Tensor) -> torch.Tensor:          # y_t = sum_{s <= t} a_ts x_s, (B, T)
        return x @ a.tril().T

    def two_taps(x: torch.Tensor) -> torch.Tensor:       # y_t = x_t - 2 x_{t-1}
        return x - 2 * torch.nn.functional.pad(x, (1, 0))[:, :-1]

    x = torch.randn(2, 4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    outputs = [0, 1, 2, 3]
    dep = backprop_dependence(_probe(lower), x, lower(x), 1, outputs, gen)
    assert dep.shape == (4, 2, 4)
    assert first_violation(dep, outputs, allowed_mask(4, 0)) is None
    assert unseen(dep, outputs, required(4, 0, "all")) == {}
    dep = backprop_dependence(_probe(two_taps), x, two_taps(x), 1, outputs, gen)
    assert unseen(dep, outputs, required(4, 0, "current")) == {}
    assert unseen(dep, outputs, required(4, 0, "all")) == {2: [0], 3: [0, 1]}
    assert first_violation(dep, outputs, allowed_mask(4, 1)) == ("leak", 0, 0, [0])


def test_a_dead_relu_is_not_over_masking_but_a_structural_zero_is() -> None:
    """Output t = relu(x_0 + ... + x_t): where the sum is negative the gradient is exactly 0
    on every allowed input, yet the function depends on them; a batch of 32 other inputs
    shows it (each hides it with probability 1/2: a false alarm 2^-32 per output). A model
    whose output t sees only x_t has a zero no input can change. Over hundreds of draws the
    dead ReLU is never blamed and the structural zero always is."""
    def dead_relu(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.cumsum(dim=1))

    def diagonal(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    steps = 6
    outputs, need = list(range(steps)), required(steps, 0, "all")
    gen = torch.Generator().manual_seed(0)
    blamed, dead_seen = 0, 0
    for _ in range(300):
        x = -torch.rand(1, steps, generator=gen, dtype=torch.float64) - 0.1    # every sum < 0
        dep = backprop_dependence(_probe(dead_relu), x, dead_relu(x), 1, outputs, gen)
        missing = unseen(dep, outputs, need)
        dead_seen += bool(missing)
        others = torch.rand(32, steps, generator=gen, dtype=torch.float64) * 6 - 3
        blamed += bool(confirm_missing(missing, [(_probe(dead_relu), others)], x, 1, gen))
        structural = backprop_dependence(_probe(diagonal), x, x, 1, outputs, gen)
        still = confirm_missing(unseen(structural, outputs, need),
                                [(_probe(diagonal), others)], x, 1, gen)
        assert still and min(still) == 1 and still[1] == [0]
    assert dead_seen == 300 and blamed == 0


def test_a_zero_initialised_layer_is_cleared_by_re_drawn_parameters() -> None:
    layer = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(layer.weight)

    def zero_init(x: torch.Tensor) -> torch.Tensor:        # y_t = w x_t + b with w = 0
        return layer(x.unsqueeze(-1)).squeeze(-1)

    redrawn = torch.nn.Linear(1, 1)
    x = torch.randn(2, 5)
    gen = torch.Generator().manual_seed(0)
    outputs = list(range(5))
    dep = backprop_dependence(_probe(zero_init), x, zero_init(x), 1, outputs, gen)
    missing = unseen(dep, outputs, required(5, 0, "current"))
    assert sorted(missing) == outputs
    assert confirm_missing(missing, [(_probe(zero_init), torch.randn(2, 5))], x, 1, gen)
    cleared = confirm_missing(missing, [(_probe(lambda v: redrawn(v.unsqueeze(-1)).squeeze(-1)),
                                         x)], x, 1, gen)
    assert cleared == {}


def test_a_dependence_no_gradient_passes_is_shown_by_changing_the_input() -> None:
    """Output t counts the positive inputs up to t: integer code, no gradient reaches x, yet
    it depends on every x_s, s <= t; changing x_s alone (in 32 rows: a sign flips in one of
    them but with probability 2^-32) shows it. A function of x_t only still lacks its earlier
    inputs."""
    def counts(x: torch.Tensor) -> torch.Tensor:
        return (x > 0).long().cumsum(dim=1).float()

    def current(x: torch.Tensor) -> torch.Tensor:
        return (x > 0).float()

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(32, 5, generator=gen) * 6 - 3          # a batch, as the check's other inputs
    outputs, need = list(range(5)), required(5, 0, "all")
    no_grad = backprop_dependence(lambda _x, _c: None, x, counts(x), 1, outputs, gen)
    missing = unseen(no_grad, outputs, need)
    assert missing == {t: list(range(t + 1)) for t in range(5)}
    spec = {"min": -3, "max": 3}
    assert confirm_by_change({t: list(s) for t, s in missing.items()}, counts, x, 1, spec,
                             gen) == {}
    left = confirm_by_change({t: list(s) for t, s in missing.items()}, current, x, 1, spec, gen)
    assert left == {t: list(range(t)) for t in range(1, 5)}


def test_unexpected_keys_reads_load_state_dict_replies_as_untrusted_data() -> None:
    assert _unexpected_keys(([], ["weight_ih"])) == ["weight_ih"]
    assert _unexpected_keys((["my_buffer"], [])) == []          # the student's own extras
    assert _unexpected_keys("anything") == [] and _unexpected_keys(None) == []


def test_arrange_builds_tuples() -> None:
    t = {"x": torch.ones(1), "h": torch.zeros(1), "c": torch.full((1,), 2.0)}
    args = arrange(["x", ["h", "c"]], t)
    assert args[0] is t["x"] and isinstance(args[1], tuple) and args[1][1] is t["c"]


def test_library_module_is_seeded_and_leaves_the_global_rng() -> None:
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = library_module("LSTMCell", ["I", 3], {"I": 2}, 0, torch.float64)
    b = library_module("LSTMCell", ["I", 3], {"I": 2}, 0, torch.float64)
    assert torch.rand(1) == before
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert a.weight_ih.shape == (12, 2) and a.weight_ih.dtype == torch.float64
    with pytest.raises(KeyError):
        library_module("NoSuchModule", [], {}, 0, torch.float32)


def test_poisson_binomial_matches_the_binomial_when_p_is_constant() -> None:
    n, p = 50, 0.3
    x = np.zeros((n, 1))
    x[:20] = 1
    ours = poisson_binomial_pvalues(x, np.full((n, 1), p))[0]
    lower, upper = stats.binom.cdf(20, n, p), stats.binom.sf(19, n, p)
    assert ours == pytest.approx(min(1.0, 2 * min(lower, upper)), rel=1e-9)


def test_poisson_binomial_tail_is_a_probability_far_out() -> None:
    """1 - cdf went negative (-1.8e-15) in a report; the upper tail is summed directly."""
    n, p = 1000, 0.145
    x = np.zeros((n, 1))
    x[:805] = 1
    ours = poisson_binomial_pvalues(x, np.full((n, 1), p))[0]
    assert 0.0 <= ours < 1e-100
    assert ours == pytest.approx(2 * stats.binom.sf(804, n, p), rel=1e-6)


def test_poisson_binomial_false_alarms_are_rare_and_bugs_are_caught() -> None:
    gen = np.random.default_rng(0)
    p = np.linspace(0.02, 0.9, 64) * gen.uniform(0.5, 1, size=(1000, 64))
    x = (gen.uniform(size=p.shape) < p).astype(float)
    assert poisson_binomial_pvalues(x, p).min() * 64 > 1e-6
    shifted = np.roll(x, 1, axis=1)                      # pixel i drawn with pixel i-1's law
    assert poisson_binomial_pvalues(shifted, p).min() * 64 < 1e-6


def test_bernoulli_log_prob_is_stable_and_exact() -> None:
    x = torch.tensor([[1.0, 0.0, 1.0]])
    logits = torch.tensor([[100.0, 100.0, 0.0]])
    assert bernoulli_log_prob(x, logits).item() == pytest.approx(-100.0 - np.log(2), abs=1e-9)


def _submission(folder: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "autoregressive"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "autoregressive.py").read_text()),
                nbformat.v4.new_code_cell(source)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "autoregressive.ipynb")
    (folder / "pixel_ar.pt").write_bytes((REPO / "reference" / "checkpoints" /
                                          "pixel_ar.pt").read_bytes())
    return folder


FLOAT32_GRU = '''
_RefGRU = GRUCell
class GRUCell(_RefGRU):
    def forward(self, x, h=None):
        if h is None:
            h = torch.zeros(x.shape[0], self.hidden_size)       # float32 whatever x is
        return super().forward(x.float(), h.float())
'''

OVERMASKED_ATTENTION = '''
class CausalSelfAttention(CausalSelfAttention):
    def forward(self, x):
        return self.out(self.qkv(x)[..., 2 * x.shape[-1]:])      # each position sees only itself
'''


ZERO_INIT_CONV = '''
class CausalConv1d(CausalConv1d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        nn.init.zeros_(self.conv.weight)           # no gradient anywhere until trained
        self.drop = nn.Dropout(0.9)                 # off in eval mode, as the grader runs it

    def forward(self, x):
        return self.drop(super().forward(x))
'''


@pytest.mark.kernel
def test_reference_float32_fallback_and_over_masking(tmp_path: Path) -> None:
    from grader.pipeline import grade

    report = grade(_submission(tmp_path / "a", FLOAT32_GRU + OVERMASKED_ATTENTION +
                               ZERO_INIT_CONV),
                   only={"gru_matches_torch", "attention_causal", "conv_receptive_field",
                         "conv_causal"})
    items = {i["id"]: i for i in report["items"]}
    assert items["gru_matches_torch"]["outcome"] == "passed"
    assert items["gru_matches_torch"]["details"]["precision"] == "float32"
    assert items["conv_receptive_field"]["outcome"] == "passed"     # zero-initialised layers
    assert items["conv_causal"]["outcome"] == "passed"
    attention = items["attention_causal"]
    assert attention["outcome"] == "failed" and "over-masked" in attention["message"]
    assert "re-drawn" in attention["message"]
