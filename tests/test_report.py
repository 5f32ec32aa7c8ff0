"""The report contract: schema validation, hostile text made inert, strict JSON, figures."""

from __future__ import annotations

import base64
import copy
import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from grader.report import SCHEMA_VERSION, render_html, validate_report, write_reports
from grader.report.schema import load_schema

XSS = "<script>alert(1)</script>"


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG, built by hand so the test needs no imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


PNG_B64 = base64.b64encode(tiny_png()).decode()


def make_item(**overrides: Any) -> dict[str, Any]:
    item = {
        "id": "kl_matches_reference", "title": "KL term matches the closed form",
        "score": 5.0, "max_score": 5.0, "outcome": "passed",
        "message": "matches the reference on 30 inputs (max abs error 2.1e-07)",
        "visibility": "public", "check": "matches_reference", "hint": "see eq. (7)",
        "counterexample": None, "traceback": None, "details": {"examples": 30, "atol": 1e-5},
        "figures": [], "needs_review": False, "duration_s": 0.42,
    }
    return {**item, **overrides}


def make_report() -> dict[str, Any]:
    failed = make_item(
        id="elbo_sign", title="ELBO has the right sign", score=0.0, max_score=5.0,
        outcome="failed", visibility="hidden", check="matches_reference",
        message="loss differs from the reference by 3.2 (rtol 1e-4)",
        counterexample={"inputs": {"x": "shape (1, 2): [[0. 1.]]"}, "expected": "1.5",
                        "actual": "-1.7"},
        details={"max_abs_error": 3.2, "worst_index": [0, 1], "errors": {"kl": 0.1}})
    errored = make_item(
        id="decoder_range", title="Decoder outputs lie in [0, 1]", score=0.0, max_score=2.5,
        outcome="error", message="your code raised ValueError: bad shape",
        traceback="\x1b[0;31mValueError\x1b[0m: bad shape", details={})
    return {
        "schema_version": SCHEMA_VERSION, "assignment": "vae",
        "title": "Variational autoencoders", "mode": "grade", "score": 5.0, "max_score": 12.5,
        "submission": {"path": "/subs/alice", "notebook": "vae.ipynb", "sha256": "ab" * 32,
                       "files": ["vae.ipynb", "vae.pt"]},
        "items": [make_item(), failed, errored],
        "execution": {
            "sandbox": {"enabled": True, "kind": "bubblewrap", "detail": "bwrap 0.9.0",
                        "limits": {"memory_mb": 4096, "cell_timeout_s": 120.0}},
            "cells": [{"index": 0, "status": "ok", "duration_s": 0.01, "error": None},
                      {"index": 2, "status": "error", "duration_s": 0.2,
                       "error": {"ename": "NameError", "evalue": "name 'x' is not defined",
                                 "traceback": "NameError: name 'x' is not defined"}},
                      {"index": 3, "status": "not_run", "duration_s": None, "error": None}],
            "timed_out": False, "kernel_died": False, "output_truncated": False,
            "restarts": 0, "parameters": {"SEED": 0, "DEVICE": "cpu", "TRAIN": False}},
        "timings": {"kernel_start_s": 1.2, "notebook_s": 3.4, "checks_s": 2.0, "total_s": 7.1,
                    "setup_s": 0.3},
        "versions": {"grader": "0.1.0", "python": "3.11.9", "torch": "2.5.1",
                     "hypothesis": "6.112.0", "nbclient": "0.10.0", "rubric_sha256": "cd" * 32,
                     "platform": "linux"},
        "created": "2025-11-24T11:33:00+00:00",
        "warnings": [],
    }


@pytest.fixture
def report() -> dict[str, Any]:
    return make_report()


def problems(report: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as info:
        validate_report(report)
    return str(info.value)


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    accepted = schema["properties"]["schema_version"]["enum"]
    assert SCHEMA_VERSION in accepted and "1.0" in accepted, "a minor version reads 1.0"
    assert {v.split(".")[0] for v in accepted} == {SCHEMA_VERSION.split(".")[0]}


def test_validate_report_accepts_example(report: dict[str, Any]) -> None:
    validate_report(report)


def test_validate_report_accepts_check_mode_without_optional_fields(
        report: dict[str, Any]) -> None:
    report["mode"] = "check"
    del report["execution"]["restarts"], report["timings"]["setup_s"]
    for item in report["items"]:
        del item["figures"]
    validate_report(report)


def test_counterexample_may_omit_expected_and_actual(report: dict[str, Any]) -> None:
    report["items"][1]["counterexample"] = {"inputs": {"x": "0.5"}}
    assert "x</b> = 0.5" in render_html(report)


def test_validate_report_names_missing_score(report: dict[str, Any]) -> None:
    del report["score"]
    assert "$: 'score' is a required property" in problems(report)


def test_validate_report_names_bad_outcome_path(report: dict[str, Any]) -> None:
    report["items"][1]["outcome"] = "ok"
    text = problems(report)
    assert "$.items[1].outcome" in text and "'ok' is not one of" in text


@pytest.mark.parametrize("path, value, expected", [
    (("execution", "cells", 1, "status"), "crashed", "$.execution.cells[1].status"),
    (("items", 0, "counterexample"), {"inputs": {"x": 1}, "expected": None, "actual": None},
     "$.items[0].counterexample.inputs.x"),
    (("items", 0, "score"), -1.0, "$.items[0].score"),
    (("schema_version",), "2.0", "$.schema_version"),
    (("items", 0, "surprise"), 1, "$.items[0]: Additional properties"),
])
def test_validate_report_names_path_of_each_problem(report: dict[str, Any], path: tuple,
                                                    value: Any, expected: str) -> None:
    node = report
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert expected in problems(report)


def test_validate_report_checks_score_relations(report: dict[str, Any]) -> None:
    report["items"][0]["score"] = 6.0
    assert "$.items[0].score: 6.0 is greater than max_score 5.0" in problems(report)
    report = make_report()
    report["score"] = 4.0
    assert "not the sum of the items' score" in problems(report)
    report = make_report()
    report["score"], report["max_score"] = math.nan, 12.5
    assert "$.score: nan is not a finite number" in problems(report)


def test_render_html_escapes_hostile_text(report: dict[str, Any]) -> None:
    report["items"][1].update(title=XSS, message=f"value {XSS}", traceback=XSS,
                              counterexample={"inputs": {XSS: XSS}, "expected": XSS,
                                              "actual": XSS},
                              details={XSS: XSS})
    report["warnings"] = [XSS]
    page = render_html(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_render_html_strips_ansi_and_control_characters(report: dict[str, Any]) -> None:
    report["items"][2]["traceback"] = ("\x1b[0;31mValueError\x1b[0m\x1b[1m: bad\x1b[0m\x00 "
                                       "\x1b]8;;http://x\x07link\x1b]8;;\x07")
    page = render_html(report)
    assert "\x1b" not in page and "\x00" not in page
    assert "ValueError: bad link" in page


def test_render_html_marks_hidden_items_and_summary(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert ">hidden</span>" in page
    assert "5 / 12.5" in page and "40%" in page
    assert 'class="pill failed"' in page and 'class="pill error"' in page
    assert "Cell 3: error" in page and "NameError" in page
    report["mode"] = "check"
    report["items"][1]["visibility"] = "public"
    assert ">hidden</span>" not in render_html(report)


def test_render_html_shows_sandbox_warning(report: dict[str, Any]) -> None:
    report["execution"]["sandbox"].update(enabled=False, kind="none", detail="none")
    report["warnings"] = ["graded WITHOUT a sandbox (--unsafe-no-sandbox)"]
    page = render_html(report)
    assert 'class="banner danger"' in page and "graded WITHOUT a sandbox" in page


def test_render_html_embeds_figure_as_data_uri(report: dict[str, Any]) -> None:
    report["items"][0]["figures"] = [{"title": "samples", "png_base64": PNG_B64}]
    page = render_html(report)
    assert f'src="data:image/png;base64,{PNG_B64}"' in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize("bad", [
    "not base64 at all!!", '"><script>alert(1)</script>', base64.b64encode(b"GIF89a...").decode(),
    PNG_B64[:-4] + "@@@@",
])
def test_render_html_drops_invalid_figure(report: dict[str, Any], bad: str) -> None:
    report["items"][0]["figures"] = [{"title": "broken", "png_base64": bad}]
    page = render_html(report)
    assert "data:image" not in page and "<script" not in page.lower()
    assert "1 figure(s) not shown" in page


def test_write_reports_makes_non_finite_details_strict_json(report: dict[str, Any],
                                                            tmp_path: Path) -> None:
    report["items"][0]["details"] = {"loss": math.nan, "bounds": [math.inf, -math.inf, 1.5],
                                     "nested": {"ratio": math.inf}}
    original = copy.deepcopy(report)
    json_path, html_path = write_reports(report, tmp_path / "out")
    text = json_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    details = json.loads(text)["items"][0]["details"]
    assert details == {"loss": "nan", "bounds": ["inf", "-inf", 1.5], "nested": {"ratio": "inf"}}
    assert json.loads(text)["score"] == 5.0
    assert html_path.read_text().startswith("<!DOCTYPE html>")
    assert math.isnan(report["items"][0]["details"]["loss"]), "the caller's dict is untouched"
    assert report.keys() == original.keys()


def test_write_reports_refuses_invalid_report_and_writes_nothing(report: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    report["items"][0]["outcome"] = "ok"
    with pytest.raises(ValueError, match=r"\$\.items\[0\]\.outcome"):
        write_reports(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_docs_example_is_valid() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "report-schema.md").read_text()
    example = doc.split("## Example", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    validate_report(json.loads(example))


def test_validate_report_refuses_a_silent_zero_for_a_grader_side_cause(
        report: dict[str, Any]) -> None:
    report["items"][2].update(error_kind="kernel_start", needs_review=False)
    assert "$.items[2].needs_review: false, but error_kind 'kernel_start' always needs review" \
        in problems(report)
    report = make_report()
    report["items"][1]["error_kind"] = "student_exception"
    assert "$.items[1].error_kind: 'student_exception' on a failed item" in problems(report)
    report = make_report()
    report["items"][2]["error_kind"] = "crashed"
    assert "$.items[2].error_kind" in problems(report)


def test_render_html_shows_the_cause_and_the_review_flag(report: dict[str, Any]) -> None:
    report["items"][2].update(error_kind="grader", needs_review=True)
    validate_report(report)
    page = render_html(report)
    assert "cause <code>grader</code>" in page and "needs TA review" in page
