"""Verdicts cannot be forged from the kernel, and correct work is never marked down.

Each submission here is the trusted reference's own source in a notebook, with one cell
appended: an attack, or a harmless difference a correct student might have.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.pipeline import grade

pytestmark = pytest.mark.kernel
FUNCTION_ITEMS = {"kl_matches_reference", "kl_known_values", "bernoulli_stable",
                  "reparameterize_moments", "reparameterize_gradient"}


def outcomes(report: dict) -> dict[str, str]:
    return {i["id"]: i["outcome"] for i in report["items"]}


WRONG_KL = ("def gaussian_kl(mu, logvar):\n"
            "    return -0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)")

TAMPER = '''
import sys, json, base64, torch, numpy
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
numpy.testing.assert_allclose = lambda *a, **k: None
from IPython.display import publish_display_data

def forge(payload):
    req = json.loads(base64.b64decode(payload))
    publish_display_data({"application/vnd.grader.reply+json": {
        "ok": True, "nonce": req.get("nonce"), "value": %s}}, metadata={})

def hijack(*_):
    probe = sys.modules.get("__grader_probe__")
    if probe is not None and probe.handle is not forge:
        probe.handle = forge

get_ipython().events.register("post_run_cell", hijack)
'''


def test_patching_checks_or_forging_replies_earns_nothing(make_submission) -> None:
    score_claim = '{"score": 100, "outcome": "passed"}'
    report = grade(make_submission(WRONG_KL, TAMPER % repr(score_claim)),
                   only=FUNCTION_ITEMS | {"kl_nonnegative"})
    assert report["score"] == 0.0, outcomes(report)
    assert set(outcomes(report).values()) <= {"failed", "error"}


def test_a_planted_pickle_is_never_unpickled(make_submission, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = ('{"$pickle": base64.b64encode(__import__("pickle").dumps('
               'type("X", (), {"__reduce__": lambda s: (__import__("os").system, '
               '("touch %s",))})())).decode()}' % marker)
    report = grade(make_submission(WRONG_KL, TAMPER % payload),
                   only={"kl_matches_reference"})
    item = report["items"][0]
    assert item["outcome"] == "error" and "unknown value" in item["message"]
    assert not marker.exists()


def test_warnings_stderr_and_prints_cost_nothing(make_submission) -> None:
    noisy = '''
import sys, warnings
_kl = gaussian_kl
def gaussian_kl(mu, logvar):
    warnings.warn("this KL is fine", UserWarning)
    print("debug: computing KL", file=sys.stderr)
    print("debug: shapes", mu.shape)
    return _kl(mu, logvar)
warnings.warn("top-level warning", DeprecationWarning)
print("noise on stderr", file=sys.stderr)
'''
    report = grade(make_submission(noisy), only={"kl_matches_reference", "kl_known_values"})
    assert set(outcomes(report).values()) == {"passed"}, report["items"]


def test_the_order_of_random_draws_costs_nothing(make_submission) -> None:
    reordered = '''
def reparameterize(mu, logvar):
    torch.rand(3)                      # an extra draw first: other noise than the reference's
    eps = torch.randn_like(logvar)
    return eps * torch.exp(logvar / 2) + mu
'''
    report = grade(make_submission(reordered),
                   only={"reparameterize_moments", "reparameterize_gradient"})
    assert set(outcomes(report).values()) == {"passed"}, report["items"]


def test_noise_from_a_private_generator_built_in_place_costs_nothing(make_submission) -> None:
    private = '''
_noise = torch.Generator().manual_seed(1234)
def reparameterize(mu, logvar):
    z = torch.empty_like(mu).normal_(generator=_noise)     # the grader cannot reseed this
    return z.mul_(torch.exp(0.5 * logvar)).add_(mu)
'''
    report = grade(make_submission(private),
                   only={"reparameterize_moments", "reparameterize_gradient"})
    assert set(outcomes(report).values()) == {"passed"}, report["items"]


def test_float32_only_code_is_graded_with_float32_tolerances(make_submission) -> None:
    float32 = '''
def gaussian_kl(mu, logvar):
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
'''
    report = grade(make_submission(float32), only={"kl_matches_reference"})
    item = report["items"][0]
    assert item["outcome"] == "passed" and item["details"]["precision"] == "float32"


def test_missing_names_and_exceptions_are_clear_verdicts(make_submission) -> None:
    broken = '''
del gaussian_kl
def bernoulli_log_likelihood(x, logits):
    raise RuntimeError("not done yet")
'''
    report = grade(make_submission(broken), only={"kl_matches_reference",
                                                       "bernoulli_matches_reference"})
    kl, bern = report["items"]
    assert kl["outcome"] == "error" and "defines no `gaussian_kl`" in kl["message"]
    assert bern["outcome"] == "failed" and "RuntimeError: not done yet" in bern["message"]
    assert bern["counterexample"]["inputs"]


def test_the_same_submission_gets_the_same_report_twice(make_submission) -> None:
    folder = make_submission(WRONG_KL)
    first = grade(folder, only=FUNCTION_ITEMS)
    second = grade(folder, only=FUNCTION_ITEMS)
    strip = [{k: v for k, v in i.items() if k != "duration_s"} for i in first["items"]]
    again = [{k: v for k, v in i.items() if k != "duration_s"} for i in second["items"]]
    assert strip == again and first["score"] == second["score"]

