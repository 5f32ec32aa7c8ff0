"""LMS exports in: each layout recognised, the latest attempt per student, hostile input skipped."""

from __future__ import annotations

import datetime as dt
import io
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.batch.ingest import Limits, ingest, read_roster
from grader.errors import CourseError


def nb_bytes(source: str = "x = 1") -> bytes:
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "vae"}})
    nb.cells = [nbformat.v4.new_code_cell(source, id="cell-1")]
    return nbformat.writes(nb).encode()


def files_of(attempt) -> dict[str, bytes]:  # noqa: ANN001
    return {p.name: p.read_bytes() for p in sorted(attempt.folder.iterdir())}


def test_per_student_folders_and_zips(tmp_path: Path) -> None:
    src = tmp_path / "subs"
    (src / "alice").mkdir(parents=True)
    (src / "alice" / "vae.ipynb").write_bytes(nb_bytes("a = 1"))
    (src / "alice" / "vae.pt").write_bytes(b"weights")
    (src / "alice" / "notes.docx").write_bytes(b"doc")
    with zipfile.ZipFile(src / "bob.zip", "w") as zf:
        zf.writestr("bob/vae.ipynb", nb_bytes("b = 2"))
    (src / "carol").mkdir()
    (src / "carol" / "vae.ipynb").write_text("{not json")
    (src / "stray.txt").write_text("?")
    got = ingest(src, tmp_path / "scratch")
    assert got.layout == "folders"
    assert [a.student for a in got.attempts] == ["alice", "bob"]
    alice, bob = got.attempts
    assert files_of(alice) == {"vae.ipynb": nb_bytes("a = 1"), "vae.pt": b"weights"}
    assert any("notes.docx" in n for n in alice.notes)
    assert files_of(bob) == {"vae.ipynb": nb_bytes("b = 2")}
    reasons = {s.source: s.reason for s in got.skipped}
    assert "not a valid notebook" in reasons["carol"]
    assert "loose file" in reasons["stray.txt"]
    assert all(tmp_path / "scratch" in a.folder.parents for a in got.attempts)


def test_brightspace_export_keeps_the_latest_attempt_per_student(tmp_path: Path) -> None:
    export = tmp_path / "ufora.zip"
    with zipfile.ZipFile(export, "w") as zf:
        zf.writestr("index.html", "<html></html>")
        zf.writestr("101-2001 - Jane Doe - Nov 20, 2026 1043 AM - vae.ipynb", nb_bytes("old"))
        zf.writestr("101-2001 - Jane Doe - Nov 20, 2026 1043 AM - vae.pt", b"old weights")
        zf.writestr("102-2001 - Jane Doe - Nov 21, 2026 213 PM - vae.ipynb", nb_bytes("new"))
        zf.writestr("103-2002 - Li Wei - Nov 21, 2026 1159 PM - lab.ipynb", nb_bytes("li"))
        zf.writestr("random.txt", "x")
    got = ingest(export, tmp_path / "scratch")
    assert got.layout == "brightspace" and got.superseded == 1
    jane, li = got.attempts
    assert (jane.student, jane.name, li.student, li.name) == ("2001", "Jane Doe", "2002",
                                                              "Li Wei")
    assert jane.submitted == dt.datetime(2026, 11, 21, 14, 13)
    assert files_of(jane) == {"vae.ipynb": nb_bytes("new")}
    assert [s.source for s in got.skipped] == ["random.txt"]
    assert len(ingest(export, tmp_path / "all", all_attempts=True).attempts) == 3


def test_canvas_export_groups_files_and_drops_resubmission_suffixes(tmp_path: Path) -> None:
    src = tmp_path / "canvas"
    src.mkdir()
    (src / "doejane_12345_900_vae-1.ipynb").write_bytes(nb_bytes("jane"))
    (src / "doejane_12345_900_vae.pt").write_bytes(b"w")
    (src / "weili_LATE_67890_901_vae.ipynb").write_bytes(nb_bytes("wei"))
    got = ingest(src, tmp_path / "scratch")
    assert got.layout == "canvas"
    jane, wei = got.attempts
    assert (jane.student, jane.name) == ("12345", "doejane")
    assert sorted(files_of(jane)) == ["vae.ipynb", "vae.pt"]
    assert "marked LATE by Canvas" in wei.notes


def test_moodle_export(tmp_path: Path) -> None:
    src = tmp_path / "moodle"
    folder = src / "Jane Doe_4242_assignsubmission_file_"
    folder.mkdir(parents=True)
    (folder / "vae.ipynb").write_bytes(nb_bytes())
    got = ingest(src, tmp_path / "scratch")
    assert (got.layout, got.attempts[0].student, got.attempts[0].name) == ("moodle", "4242",
                                                                          "Jane Doe")


def test_gradescope_export_with_history(tmp_path: Path) -> None:
    src = tmp_path / "gs"
    for sub, text in (("submission_11", "new"), ("submission_10", "old"),
                      ("submission_12", "other")):
        (src / sub).mkdir(parents=True)
        (src / sub / "vae.ipynb").write_bytes(nb_bytes(text))
    (src / "submission_metadata.yml").write_text(
        "submission_11:\n  :submitters:\n  - :name: Jane Doe\n    :sid: 's001'\n"
        "    :email: jane@uni.be\n  :created_at: 2026-11-21 10:00:00.000000000 +01:00\n"
        "  :history:\n  - :id: 10\n    :created_at: 2026-11-20 10:00:00.000000000 +01:00\n"
        "submission_12:\n  :submitters:\n  - :name: Li Wei\n    :email: li@uni.be\n"
        "  :created_at: 2026-11-21 11:00:00.000000000 +01:00\n")
    got = ingest(src, tmp_path / "scratch")
    assert got.layout == "gradescope" and got.superseded == 1
    assert [(a.student, a.name) for a in got.attempts] == [("li@uni.be", "Li Wei"),
                                                          ("s001", "Jane Doe")]
    assert files_of(got.attempts[1]) == {"vae.ipynb": nb_bytes("new")}


def test_hostile_zips_are_skipped_with_reasons_and_nothing_escapes(tmp_path: Path) -> None:
    src = tmp_path / "subs"
    src.mkdir()
    evil = src / "mallory.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../escaped.ipynb", nb_bytes())
        zf.writestr("/etc/cron.d/x", "boom")
        link = zipfile.ZipInfo("vae_link.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("vae.ipynb", nb_bytes("ok"))
        zf.writestr("bomb.pt", b"\0" * (3 << 20), compress_type=zipfile.ZIP_DEFLATED)
    evil.write_bytes(buf.getvalue())
    (src / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    big = src / "huge.zip"
    with zipfile.ZipFile(big, "w") as zf:
        zf.writestr("vae.ipynb", nb_bytes())
        zf.writestr("w.pt", b"1" * (2 << 20))
    (src / "linked").symlink_to(tmp_path)
    got = ingest(src, tmp_path / "scratch", limits=Limits(file_mb=1, ratio=50))
    reasons = "\n".join(f"{s.source}: {s.reason}" for s in got.skipped)
    assert "mallory.zip:../../escaped.ipynb: path escapes the archive (zip-slip)" in reasons
    assert "mallory.zip:/etc/cron.d/x: path escapes" in reasons
    assert "vae_link.ipynb: a symbolic link" in reasons
    assert "bomb.pt: " in reasons and "broken.zip: not a readable zip" in reasons
    assert "huge.zip:w.pt: file of 2 MiB is over the 1 MiB limit" in reasons
    assert "linked: a symbolic link" in reasons
    assert [a.student for a in got.attempts] == ["huge", "mallory"]
    assert files_of(got.attempts[1]) == {"vae.ipynb": nb_bytes("ok")}
    assert not (tmp_path / "escaped.ipynb").exists()
    written = [p for p in tmp_path.rglob("*") if "scratch" not in p.parts and p.is_file()]
    assert all(p.parent == src or src in p.parents for p in written)


def test_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(CourseError, match="not a folder or a .zip"):
        ingest(tmp_path / "nothing", tmp_path / "scratch")
    (tmp_path / "bad.zip").write_bytes(b"garbage")
    with pytest.raises(CourseError, match="not a readable zip"):
        ingest(tmp_path / "bad.zip", tmp_path / "scratch")


def test_roster_columns_are_recognised(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("\ufeffOrgDefinedId,First Name,Last Name,Email\n#2001,Jane,Doe,j@x\n"
                      "2002,Li,Wei,l@x\n")
    assert read_roster(roster) == {"2001": "Jane Doe", "2002": "Li Wei"}
    roster.write_text("who,what\n1,2\n")
    with pytest.raises(CourseError, match="needs an id column"):
        read_roster(roster)
