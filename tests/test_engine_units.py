"""Units of the engine that need no kernel: rubric, scoring, protocol decoding, maths."""

from __future__ import annotations

import base64
import functools
import importlib.util
import math
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.checks.compare import Tolerance, mismatch, normal_moment_test
from grader.checks.numeric import central_differences
from grader.checks.strategies import input_sets, run_property
from grader.errors import ProtocolError, RubricError
from grader.protocol import DenseBudget, Handle, decode, encode
from grader.rubric import load_rubric

REPO = Path(__file__).resolve().parent.parent


# --- rubric -----------------------------------------------------------------------------

def test_rubric_vae_loads_and_validates() -> None:
    rubric = load_rubric(REPO / "rubrics" / "vae.yaml")
    assert rubric.assignment == "vae" and rubric.checkpoints == ("vae.pt",)
    assert len({i.id for i in rubric.items}) == len(rubric.items)
    assert rubric.visible(public_only=True) and len(rubric.visible(True)) < len(rubric.items)
    assert rubric.max_score == sum(i.points for i in rubric.items) > 0


MINIMAL = """assignment: demo
items:
  - id: a
    points: 1
    visibility: public
    check: known_values
    params:
      function: f
      cases: []
"""


@pytest.mark.parametrize("edit, line, key, words", [
    (("check: known_values", "check: known_valuez"), 6, "check", "unknown check kind"),
    (("      cases: []", "      cases: []\n      tolerance: 3"), 10, "params.tolerance",
     "is not a parameter"),
    (("      cases: []\n", ""), 8, "params.cases", "is required"),
    (("    points: 1\n", ""), None, "points", "missing required key"),
    (("visibility: public", "visibility: secret"), 5, "visibility", "public or hidden"),
    (("    points: 1", "    points: one"), 4, "points", "must be int or float"),
    (("assignment: demo", "assignment: demo\nlimitz: {}"), 2, "limitz", "unknown key"),
])
def test_rubric_errors_name_file_line_and_key(tmp_path: Path, edit: tuple[str, str],
                                              line: int | None, key: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL.replace(*edit))
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    err = info.value
    assert err.key == key and words in str(err) and str(path) in str(err)
    if line is not None:
        assert err.line == line, str(err)


def test_a_rubric_is_parsed_once_until_its_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(MINIMAL)
    first = load_rubric(path)
    assert load_rubric(path) is first
    path.write_text(MINIMAL.replace("    points: 1", "    points: 2"))
    changed = load_rubric(path)
    assert changed is not first and changed.items[0].points == 2
    path.write_text(MINIMAL.replace("    points: 1", "    points: one"))
    with pytest.raises(RubricError):       # an error is never kept: raised on every load
        load_rubric(path)
    with pytest.raises(RubricError):
        load_rubric(path)


GENERATED = """assignment: demo
items:
  - id: a
    points: 1
    check: matches_reference
    params:
      function: f
      inputs:
        x: {shape: [B, 3], min: -1, max: 1}
      dims: {B: [1, 4]}
      rtol: 1.0e-6
"""


@pytest.mark.parametrize("edit, key, words, fix", [
    (("rtol: 1.0e-6", "rtol: abc"), "params.rtol", "must be a number >= 0, got 'abc'",
     "`rtol` is a number >= 0"),
    (("rtol: 1.0e-6", "rtol: -1"), "params.rtol", "got -1", "a number >= 0"),
    (("rtol: 1.0e-6", "max_examples: 0"), "params.max_examples", "a whole number >= 1",
     "whole number"),
    (("B: [1, 4]", "B: [4, 1]"), "params.dims", "lo <= hi, got [4, 1]", "[lo, hi]"),
    (("shape: [B, 3]", "shape: [N, 3]"), "params.inputs", "uses the symbol `N`", "input spec"),
    (("min: -1", "min: low"), "params.inputs", ".x.min must be a number", "input spec"),
    (("rtol: 1.0e-6", "precision: double"), "params.precision", "one of float32, float64",
     "float32"),
])
def test_rubric_parameter_values_are_checked_at_load(tmp_path: Path, edit: tuple[str, str],
                                                     key: str, words: str, fix: str) -> None:
    """A mistake in a value fails when the rubric loads (and so in `grader lint`), naming the
    file, the line of the key and what the value must be, not halfway through a batch."""
    path = tmp_path / "bad.yaml"
    text = GENERATED.replace(*edit)
    path.write_text(text)
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    err = info.value
    assert err.key == key and words in str(err) and str(path) in str(err), str(err)
    assert fix in err.hint, err.hint
    name = key.split(".")[1]
    assert err.line == next(i for i, ln in enumerate(text.splitlines(), 1)
                            if ln.strip().startswith(f"{name}:")), str(err)


def test_every_parameter_of_every_check_kind_is_declared() -> None:
    """A kind cannot take a parameter whose value load_rubric does not check."""
    from grader.checks import REGISTRY

    undeclared = {kind: spec.undeclared for kind, spec in REGISTRY.items() if spec.undeclared}
    assert not undeclared, f"declare these (@check(..., types=...)): {undeclared}"
    for spec in REGISTRY.values():
        assert set(spec.types) == spec.required | spec.optional, spec.kind


def test_rubric_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("assignment: x\nitems:\n  - id: [unclosed\n")
    with pytest.raises(RubricError, match="not valid YAML") as info:
        load_rubric(path)
    assert info.value.line is not None


def test_rubric_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    item = MINIMAL.split("items:\n")[1]
    path.write_text(MINIMAL + item)
    with pytest.raises(RubricError, match="duplicate item id"):
        load_rubric(path)


# --- protocol decoding: untrusted data -------------------------------------------------------

def _tensor_wire(dtype: str, shape: list[int], data: bytes) -> dict[str, object]:
    return {"$tensor": {"dtype": dtype, "shape": shape, "data": base64.b64encode(data).decode()}}


def test_decode_round_trips_tensors_and_structures() -> None:
    value = (torch.arange(6, dtype=torch.float64).reshape(2, 3), {"a": 1.5, "b": [True, None]},
             torch.tensor([1, 2], dtype=torch.int64), float("nan"))
    back = decode(encode(value))
    assert torch.equal(back[0], value[0]) and back[1] == {"a": 1.5, "b": [True, None]}
    assert torch.equal(back[2], value[2]) and math.isnan(back[3])


@pytest.mark.parametrize("wire, words", [
    (_tensor_wire("object", [1], b"\0" * 8), "unsupported dtype"),
    (_tensor_wire("float32", [3], b"\0" * 8), "carries 8 bytes"),
    (_tensor_wire("float32", [-1], b""), "invalid shape"),
    ({"$tensor": {"dtype": "float32", "shape": [1], "data": "!!!"}}, None),
    ({"__reduce__": "os.system"}, "unknown value"),
    ({"$pickle": base64.b64encode(pickle.dumps(1)).decode()}, "unknown value"),
])
def test_decode_rejects_malformed_or_hostile_replies(wire: object, words: str | None) -> None:
    with pytest.raises((ProtocolError, ValueError), match=words):
        decode(wire)


def _zipped_wire(dtype: str, shape: list[int], data: bytes) -> dict[str, object]:
    return {"$tensor": {"dtype": dtype, "shape": shape,
                        "zdata": base64.b64encode(zlib.compress(data)).decode()}}


def test_large_sparse_tensors_travel_compressed_and_come_back_exact() -> None:
    cot = torch.zeros(64, 32, 64)
    cot[torch.arange(64), :, torch.arange(64)] = torch.randn(64, 32)
    wire = encode(cot)
    assert "zdata" in wire["$tensor"] and len(wire["$tensor"]["zdata"]) < 100_000
    assert torch.equal(decode(wire), cot)
    noise = torch.randn(64, 1024)                # incompressible: stays plain
    assert "data" in encode(noise)["$tensor"] and torch.equal(decode(encode(noise)), noise)


@pytest.mark.parametrize("wire, words", [
    (_zipped_wire("float32", [4], b"\0" * 8), "carries 8 bytes, not 16"),
    (_zipped_wire("float32", [2], b"\0" * 16), "does not inflate to 8 bytes"),
    ({"$tensor": {"dtype": "float32", "shape": [2], "zdata": base64.b64encode(b"junk").decode()}},
     "does not inflate"),
    ({"$tensor": {"dtype": "float32", "shape": [2], "data": "", "zdata": ""}}, "malformed"),
])
def test_compressed_tensors_must_inflate_to_exactly_their_shape(wire: object,
                                                                words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        decode(wire)


def test_a_reply_cannot_make_the_grader_inflate_past_its_budget() -> None:
    """A zlib bomb: 1 GiB of zeros is a megabyte compressed, well inside a reply's size
    limit. Decoding refuses it before inflating anything, and the budget is the reply's:
    two halves that fit alone do not fit together."""
    bomb = {"$tensor": {"dtype": "uint8", "shape": [1 << 30],
                        "zdata": base64.b64encode(zlib.compress(bytes(1 << 20))).decode()}}
    with pytest.raises(ProtocolError, match="expand past the limit"):
        decode(bomb)
    half = _zipped_wire("uint8", [40 << 20], bytes(40 << 20))
    assert decode(half).numel() == 40 << 20
    with pytest.raises(ProtocolError, match="expand past the limit"):
        decode([half, half])
    with pytest.raises(ProtocolError, match="expand past the limit"):
        decode(half, budget=DenseBudget(1 << 20))


def test_decode_bounds_nesting_depth() -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(deep)


def test_decode_turns_handles_into_inert_ids() -> None:
    assert decode({"$handle": "h3", "type": "VAE"}) == Handle("h3", "VAE")


# --- numerics -------------------------------------------------------------------------------

def test_mismatch_reports_worst_element_and_nonfinite() -> None:
    tol = Tolerance(1e-6, 1e-6)
    assert mismatch(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), tol) is None
    assert "off by" in mismatch(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]), tol)
    assert "overflow" in mismatch(torch.tensor([-math.inf]), torch.tensor([-6400.0]), tol)
    assert "shape" in mismatch(torch.zeros(2), torch.zeros(3), tol)
    assert "tuple" in mismatch(torch.zeros(2), (torch.zeros(2), torch.zeros(2)), tol)
    worst = mismatch(torch.zeros(2, 3), torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]), tol)
    assert worst.startswith("output[1, 2]: got 0, expected 5"), worst


def test_central_differences_match_known_gradient() -> None:
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    cot = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    grad = central_differences(lambda xs: xs[0] ** 3, [x], 0, cot, 1e-6)
    assert torch.allclose(grad, 3 * x ** 2 * cot, atol=1e-7)


def test_normal_moment_test_accepts_right_and_rejects_wrong_std() -> None:
    gen = torch.Generator().manual_seed(1)
    mean, std = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0])
    draws = mean + std * torch.randn((20000, 2), generator=gen)
    ok = normal_moment_test(draws, mean, std, alpha=1e-6)
    assert ok["mean_ok"] and ok["var_ok"]
    bad = normal_moment_test(mean + std ** 2 * torch.randn((20000, 2), generator=gen), mean, std,
                             alpha=1e-6)
    assert not bad["var_ok"]


def test_normal_moment_false_alarm_rate_is_at_most_stated() -> None:
    gen = torch.Generator().manual_seed(2)
    alarms = sum(not (r["mean_ok"] and r["var_ok"]) for r in (
        normal_moment_test(torch.randn((2000, 4), generator=gen), torch.zeros(4), torch.ones(4),
                           alpha=0.05) for _ in range(200)))
    assert alarms <= 25  # expected <= 10 of 200 at alpha = 0.05


def test_properties_are_reproducible_and_shrink() -> None:
    strategy = input_sets({"x": {"shape": ["B"], "min": -10, "max": 10}}, {"B": [1, 8]})
    seen: list[list[list[float]]] = [[], []]

    def make(k: int):  # type: ignore[no-untyped-def]
        def prop(example: dict[str, np.ndarray]) -> None:
            seen[k].append(example["x"].tolist())
            assert not (example["x"] > 5).any()
        return prop

    tried_a, fail_a = run_property(strategy, make(0), 30)
    tried_b, fail_b = run_property(strategy, make(1), 30)
    assert seen[0] == seen[1] and fail_a is not None and fail_b is not None
    shrunk = seen[0][-1]                     # hypothesis replays the minimal failure last
    assert len(shrunk) == 1 and 5.0 < shrunk[0] <= 6.0, shrunk


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_input_sets_respect_shapes_and_bounds(data: st.DataObject) -> None:
    example = data.draw(input_sets({"m": {"shape": ["B", 3], "min": -2, "max": 2},
                                    "x": {"kind": "binary", "shape": ["B", 1, 8, 8]}},
                                   {"B": [1, 5]}))
    b = example["_dims"]["B"]
    assert example["m"].shape == (b, 3) and np.abs(example["m"]).max() <= 2
    assert example["x"].shape == (b, 1, 8, 8) and set(np.unique(example["x"])) <= {0.0, 1.0}


def test_generated_inputs_do_not_depend_on_which_local_modules_are_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hypothesis mixes constants of local modules into its draws; grading must not."""
    import importlib

    strategy = input_sets({"x": {"shape": ["B"], "min": -10, "max": 10}}, {"B": [1, 6]})

    def draws() -> list[list[float]]:
        seen: list[list[float]] = []
        run_property(strategy, lambda ex: seen.append(ex["x"].tolist()), 40)
        return seen

    before = draws()
    (tmp_path / "lecturer_constants.py").write_text(
        "VALUES = [0.123456, 3.5, -2.25, 7.75, 0.001, 0.025, 0.333, 9.875, -6.5]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("lecturer_constants")
    assert draws() == before


def test_float64_code_with_float32_inside_is_judged_as_float32_code() -> None:
    from grader.checks.functions import judge_with_float32_retry

    x = torch.tensor([[1234.5678, -1234.5677, 0.3]], dtype=torch.float64)
    w = torch.tensor([[1.0, 1.0, 1e-3]], dtype=torch.float64)

    def float32_inside(xs: torch.Tensor) -> torch.Tensor:     # float64 in and out
        return (xs.float() @ w.float().T).to(xs.dtype)

    expected = x @ w.T
    params: dict = {}
    assert mismatch(float32_inside(x), expected, Tolerance.of(params, "float64"))  # was a loss
    why, retried = judge_with_float32_retry(float32_inside(x), expected, params, "float64",
                                            lambda: float32_inside(x.float()))
    assert why is None and retried
    wrong = expected + 0.5                                     # a bug shows in both precisions
    why, retried = judge_with_float32_retry(wrong, expected, params, "float64",
                                            lambda: wrong.float())
    assert why and "off by" in why and not retried


_SQUARED: list[int] = []


def _square(x: torch.Tensor) -> torch.Tensor:
    _SQUARED.append(1)
    return x * x


def test_reference_gradients_are_confirmed_once_per_input_and_forward() -> None:
    """The finite differences that confirm the reference's autograd run once for the same
    forward and inputs (every student is graded on the same draws); other inputs, another
    forward, or a forward with captured state are computed afresh."""
    from grader.checks import gradients

    calls, square = _SQUARED, _square
    x, cot = torch.randn(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64)
    first = gradients.reference_gradients(square, [x], [0], cot)
    counted = len(calls)
    again = gradients.reference_gradients(square, [x.clone()], [0], cot)
    assert len(calls) == counted and torch.equal(first[0], again[0])
    assert torch.allclose(first[0], 2 * x)
    again[0].zero_()                                  # a caller's change is not remembered
    assert torch.equal(gradients.reference_gradients(square, [x], [0], cot)[0], first[0])
    gradients.reference_gradients(square, [x + 1], [0], cot)
    assert len(calls) > counted
    scale = torch.tensor(3.0, dtype=torch.float64)
    key = functools.partial(gradients._confirmation_key, args=[x], wrt=[0], cotangent=cot,
                            eps=1e-6, rtol=1e-5, seed=0)
    assert key(square) is not None
    assert key(lambda y: y * scale) is None                  # captured: not pinned by source
    assert key(lambda y, s=scale: y * s) is None             # a tensor default: neither
    assert key(torch.nn.functional.relu) != key(square)


def test_a_mutant_of_the_reference_is_never_answered_from_the_reference(
        tmp_path: Path) -> None:
    from grader.checks import gradients

    def load(name: str, text: str) -> Any:
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.f

    x, cot = torch.randn(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    reference = load("ref", "K = 2.0\ndef f(x):\n    return K * x\n")
    mutant = load("mut", "K = 3.0\ndef f(x):\n    return K * x\n")
    assert torch.allclose(gradients.reference_gradients(reference, [x], [0], cot)[0], 2 * cot)
    assert torch.allclose(gradients.reference_gradients(mutant, [x], [0], cot)[0], 3 * cot)
