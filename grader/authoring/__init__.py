"""The lecturer's workflow: author a lab, release a student kit, prove the rubric."""

from .examples import NotebookPatch, copy_submission, load_notebook_patches, submission_folder
from .expected import (Expectations, Mutant, Variant, load_expectations, load_mutants,
                       load_variants)
from .lint import Finding, lint
from .markers import split_solution
from .release import Leak, ReleaseRefused, release, scan_kit
from .scaffold import build_lab, new_lab
from .validate import Validation, validate

__all__ = ["Expectations", "Finding", "Leak", "Mutant", "NotebookPatch", "ReleaseRefused",
           "Validation", "Variant", "build_lab", "copy_submission", "lint", "load_expectations",
           "load_mutants", "load_notebook_patches", "load_variants", "new_lab", "release",
           "scan_kit", "split_solution", "submission_folder", "validate"]
