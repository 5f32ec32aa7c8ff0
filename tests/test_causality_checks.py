"""Pure parts of the causality, torch-module and autoregressive checks, and two kernel tests:
a float32-only module is graded in float32 without penalty; an over-masked attention fails."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from scipy import stats

from grader.checks.autoregressive import bernoulli_log_prob, poisson_binomial_pvalues
from grader.checks.causality import allowed_mask, dependence, positions, unpositions
from grader.checks.modules import arrange, library_module

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


@pytest.mark.kernel
def test_reference_float32_fallback_and_over_masking(tmp_path: Path) -> None:
    from grader.pipeline import grade

    report = grade(_submission(tmp_path / "a", FLOAT32_GRU + OVERMASKED_ATTENTION),
                   only={"gru_matches_torch", "attention_causal", "conv_receptive_field"})
    items = {i["id"]: i for i in report["items"]}
    assert items["gru_matches_torch"]["outcome"] == "passed"
    assert items["gru_matches_torch"]["details"]["precision"] == "float32"
    assert items["conv_receptive_field"]["outcome"] == "passed"
    attention = items["attention_causal"]
    assert attention["outcome"] == "failed" and "over-masked" in attention["message"]
