"""`grader similarity`: copies ranked first, independent solutions low, hostile code escaped."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import nbformat
import pytest
from disguise import disguise

from grader import cli
from grader.batch.ingest import ingest
from grader.rubric import load_rubric
from grader.similarity import COLUMNS, Options
from grader.similarity.code import boilerplate, fingerprint, given_units, notebook_units
from grader.similarity.compare import compare_pair, handed_units
from grader.similarity.sources import Submitted

REPO = Path(__file__).resolve().parent.parent
LABS = sorted(p.stem for p in (REPO / "rubrics").glob("*.yaml"))
VAE = REPO / "assignments" / "vae"
THRESHOLD = Options().threshold


def example(lab: str, name: str) -> Path:
    folder = REPO / "assignments" / lab / "examples" / name
    if not folder.is_dir():
        folder = REPO / "assignments" / lab / "variants" / name
    return next(folder.glob("*.ipynb"))


def similarity(lab: str, a: Path, b: Path, handed_code: list | None = None) -> float:
    rubric = load_rubric(REPO / "rubrics" / f"{lab}.yaml")
    handed = boilerplate(handed_units(REPO, rubric) if handed_code is None else handed_code,
                         Options().k)
    codes = [fingerprint(notebook_units(p, 10**6), Options().k, handed) for p in (a, b)]
    pair, _ = compare_pair(Submitted("a", "", a), Submitted("b", "", b), *codes, THRESHOLD)
    return pair.similarity


def write_disguised(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(disguise(nbformat.read(source, as_version=4)), target)
    return target


def student(root: Path, name: str, notebook: Path) -> Path:
    """A student's folder holding ``notebook`` (and the checkpoints beside it)."""
    folder = root / name
    folder.mkdir(parents=True)
    for path in notebook.parent.iterdir():
        if path.suffix in (".pt", ".pth"):
            shutil.copyfile(path, folder / path.name)
    shutil.copyfile(notebook, folder / "vae.ipynb")
    return folder


def vae_class(root: Path) -> Path:
    """correct and different (examples), conv_relu_maxpool (a variant written independently)
    and mallory: a disguised copy of correct."""
    for name in ("correct", "different", "conv_relu_maxpool"):
        student(root, name, example("vae", name))
    copy = write_disguised(example("vae", "correct"), root.parent / "disguised" / "vae.ipynb")
    folder = student(root, "mallory", copy)
    shutil.copyfile(REPO / "reference" / "checkpoints" / "vae.pt", folder / "vae.pt")  # correct's
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["similarity", *argv])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("lab", LABS)
def test_independent_solutions_score_low_and_a_disguised_copy_high(lab: str,
                                                                   tmp_path: Path) -> None:
    correct, different = example(lab, "correct"), example(lab, "different")
    copy = write_disguised(correct, tmp_path / "copy.ipynb")
    assert nbformat.read(copy, as_version=4).cells != nbformat.read(correct, as_version=4).cells
    assert similarity(lab, correct, different) < THRESHOLD - 0.25
    assert similarity(lab, correct, copy) > 0.95
    bug = min(p for p in (REPO / "assignments" / lab / "examples").glob("bug_*/*.ipynb"))
    assert similarity(lab, correct, bug) > 0.85        # correct with one line changed


def test_the_handed_code_counts_for_nothing(tmp_path: Path) -> None:
    template = VAE / "vae.ipynb"
    assert similarity("vae", template, template) == 0.0
    nb = nbformat.v4.new_notebook()
    given = given_units(REPO / "reference" / "vae.py", ["VAE.__init__", "VAE.forward"])
    assert [owner for owner, _ in given] == ["VAE", "VAE"]
    nb.cells = [nbformat.v4.new_code_cell("class VAE(nn.Module):\n" + "\n".join(
        "    " + line for _, code in given for line in code.splitlines()))]
    nbformat.write(nb, tmp_path / "given.ipynb")
    mine = tmp_path / "given.ipynb"
    assert similarity("vae", mine, mine, handed_code=[]) == 1.0
    assert similarity("vae", mine, mine, handed_code=given) == 0.0


def test_a_class_ranks_the_disguised_pair_first_in_csv_json_and_html(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subs = vae_class(tmp_path / "class")
    code, out = run(capsys, str(subs), "--assignment", "vae", "--out", str(tmp_path / "out"))
    assert code == cli.EXIT_OK, out
    assert "1 at or above the threshold 0.5" in out and "similarity.html" in out
    rows = read_csv(tmp_path / "out" / "similarity.csv")
    assert list(rows[0]) == COLUMNS and len(rows) == 6            # one row per pair
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"correct", "mallory"}
    assert float(rows[0]["similarity"]) > 0.95 and rows[0]["above_threshold"] == "True"
    assert rows[0]["side_by_side"] == "similarity.html#pair-1"
    scores = [float(r["similarity"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and max(scores[1:]) < THRESHOLD - 0.25
    assert all(r["above_threshold"] == "False" for r in rows[1:])
    doc = json.loads((tmp_path / "out" / "similarity.json").read_text())
    assert (doc["students"], doc["pairs_compared"], doc["above_threshold"]) == (4, 6, 1)
    page = (tmp_path / "out" / "similarity.html").read_text()
    first = page.split('id="pair-1"', 1)[1].split("</section>", 1)[0]
    assert "correct" in first and "mallory" in first and "above the threshold" in first
    assert first.count("<mark>") > 10 and "def reparameterize(theta0, kappa0)" in first
    assert "<script" not in page and "http" not in page


def test_a_class_of_copies_shows_at_most_the_most_similar(tmp_path: Path) -> None:
    from grader.similarity import find_similar, write_results

    for name in ("a", "b", "c", "d"):
        student(tmp_path / "class", name, example("vae", "correct"))
    result = find_similar(tmp_path / "class", "vae", course=REPO,
                          options=Options(top=1, most=3))
    written = write_results(result, tmp_path / "out")
    assert (len(result.pairs), result.above, len(result.shown)) == (6, 6, 3)
    assert len(json.loads(written["json"].read_text())["pairs"]) == 3
    page = written["html"].read_text()
    assert page.count('<section class="pair"') == 3 and "the 3 most similar are shown" in page
    assert [r["side_by_side"] != "" for r in read_csv(written["csv"])] == [True] * 3 + [False] * 3


def test_hostile_code_and_names_are_escaped(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    attack = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>'
    nb = nbformat.read(example("vae", "different"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        f"def shout(n):\n    text = '{attack}' * n\n    return text.upper().split('<')\n"))
    nb.cells.append(nbformat.v4.new_code_cell(f"# {attack}\nthis is not python {attack}"))
    for name in ("eve<b>", "trudy"):
        (tmp_path / "class" / name).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "class" / name / "vae.ipynb")
    code, out = run(capsys, str(tmp_path / "class"), "--assignment", "vae", "--out",
                    str(tmp_path / "out"))
    assert code == cli.EXIT_OK, out
    page = (tmp_path / "out" / "similarity.html").read_text()
    assert "<script" not in page and "<img" not in page and "eve<b>" not in page
    assert "&lt;script&gt;alert(" in page and "eve&lt;b&gt;" in page
    assert "this is not python" in page        # a cell that does not parse: shown as written
    rows = read_csv(tmp_path / "out" / "similarity.csv")
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"eve<b>", "trudy"}


def test_past_cohorts_are_compared_with_this_class_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = tmp_path / "2026"
    for name in ("correct", "different"):
        student(now, name, example("vae", name))
    past = tmp_path / "cohort-2025"
    student(past, "old1", write_disguised(example("vae", "different"),
                                          tmp_path / "d" / "vae.ipynb"))
    student(past, "old2", example("vae", "conv_relu_maxpool"))
    student(past, "old3", example("vae", "conv_relu_maxpool"))       # a past x past copy
    code, out = run(capsys, str(now), "--assignment", "vae", "--out", str(tmp_path / "out"),
                    "--past", str(past))
    assert code == cli.EXIT_OK, out
    rows = read_csv(tmp_path / "out" / "similarity.csv")
    assert len(rows) == 1 + 2 * 3                  # this class's pair, and each against the past
    assert (rows[0]["student_a"], rows[0]["student_b"], rows[0]["cohort_b"]) == (
        "different", "old1", "cohort-2025")
    assert {r["cohort_b"] for r in rows} == {"", "cohort-2025"}
    assert all(r["student_a"] in ("correct", "different") for r in rows)
    assert sum(r["above_threshold"] == "True" for r in rows) == 1


def test_an_lms_export_names_students_by_their_gradebook_ids(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "ufora.zip"
    copy = write_disguised(example("vae", "correct"), tmp_path / "d" / "vae.ipynb")
    with zipfile.ZipFile(export, "w") as zf:
        zf.writestr("index.html", "<html></html>")
        for sub, (user, name, notebook) in enumerate([
                ("2001", "Jane Doe", example("vae", "correct")),
                ("2002", "Li Wei", example("vae", "different")),
                ("2003", "Mal Lory", copy)], 101):
            zf.write(notebook, f"{sub}-{user} - {name} - Nov 21, 2026 213 PM - vae.ipynb")
    ids = [a.student for a in ingest(export, tmp_path / "scratch").attempts]
    code, out = run(capsys, str(export), "--assignment", "vae", "--out", str(tmp_path / "out"))
    assert code == cli.EXIT_OK, out
    rows = read_csv(tmp_path / "out" / "similarity.csv")
    assert ids == ["2001", "2002", "2003"]
    assert {r["student_a"] for r in rows} | {r["student_b"] for r in rows} == set(ids)
    assert (rows[0]["student_a"], rows[0]["name_a"], rows[0]["student_b"],
            rows[0]["name_b"]) == ("2001", "Jane Doe", "2003", "Mal Lory")
    assert "brightspace: 3 students" in out


def test_bad_input_is_named_with_what_to_do(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--assignment", "vae", "--out", str(tmp_path / "out")]
    code, text = run(capsys, str(tmp_path / "nowhere"), *out)
    assert code == cli.EXIT_USAGE and "nowhere: no such file or folder" in text
    assert "LMS export" in text
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    code, text = run(capsys, str(tmp_path / "broken.zip"), *out)
    assert code == cli.EXIT_USAGE and "broken.zip: not a readable zip file" in text
    assert "download the export again" in text
    (tmp_path / "grades.csv").write_text("a,b\n")
    code, text = run(capsys, str(tmp_path / "grades.csv"), *out)
    assert code == cli.EXIT_USAGE and "grades.csv: a .csv file, not a .zip" in text
    student(tmp_path / "one", "alone", example("vae", "correct"))
    code, text = run(capsys, str(tmp_path / "one"), *out)
    assert code == cli.EXIT_USAGE and "at least two" in text and "--past" in text
    (tmp_path / "empty").mkdir()
    code, text = run(capsys, str(tmp_path / "empty"), *out)
    assert code == cli.EXIT_USAGE and "no student's notebook found" in text
    code, text = run(capsys, str(tmp_path / "one"), "--assignment", "nolab", "--out", "x")
    assert code == cli.EXIT_USAGE and "nolab.yaml" in text
    code, text = run(capsys, str(tmp_path / "one"), *out, "--threshold", "2")
    assert code == cli.EXIT_USAGE and "[0, 1]" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.kernel
def test_a_batch_graded_class_shows_its_copy_first_and_on_the_dashboard(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_batch import chromium

    from grader.batch import run_batch

    subs = vae_class(tmp_path / "class")
    out = tmp_path / "grades"
    result = run_batch(subs, "vae", out, course=REPO, workers=2)
    assert (result.graded, result.errors) == (4, 0)
    for name in ("correct", "different", "conv_relu_maxpool", "mallory"):
        assert (out / "students" / name / "submission.ipynb").is_file()
    scores = {p.parent.name: json.loads(p.read_text())["score"]
              for p in out.glob("students/*/report.json")}
    assert scores["mallory"] == scores["correct"]          # the disguised copy still works
    code, text = run(capsys, str(out), "--assignment", "vae", "--out", str(out))
    assert code == cli.EXIT_OK and "batch: 4 students" in text and "dashboard updated" in text
    rows = read_csv(out / "similarity.csv")
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"correct", "mallory"}
    assert max(float(r["similarity"]) for r in rows[1:]) < THRESHOLD - 0.25
    page = (out / "similarity.html").read_text()
    assert 'href="students/mallory/report.html"' in page
    dashboard = (out / "dashboard.html").read_text()
    section = dashboard.split('id="similarity"', 1)[1].split("<h2", 1)[0]
    assert 'href="similarity.html#pair-1"' in section and "mallory" in section
    assert section.count('class="similar"') == 1
    code, text = run(capsys, str(out), "--assignment", "flow", "--out", str(tmp_path / "x"))
    assert code == cli.EXIT_USAGE and "a batch of `vae`" in text
    browser = chromium()
    if browser is None:        # CI sets GRADER_REQUIRE_BROWSER: there a missing browser fails
        (pytest.fail if os.environ.get("GRADER_REQUIRE_BROWSER") else pytest.skip)(
            "no Chromium on this machine (apt install chromium to run the dashboard test)")
    dom = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", (out / "dashboard.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    shown = dom.split('id="similarity"', 1)[1].split("<h2", 1)[0]
    assert "Similar submissions" in dom and 'href="similarity.html#pair-1"' in shown
    side = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--dump-dom", (out / "similarity.html").as_uri() + "#pair-1"],
                          capture_output=True, text=True, timeout=120).stdout
    assert side.count("<mark>") > 10 and 'id="pair-1"' in side
