"""The lecturer's workflow: author a lab, release a student kit, prove the rubric."""

from .expected import Expectations, Mutant, load_expectations, load_mutants
from .lint import Finding, lint
from .markers import split_solution
from .release import Leak, ReleaseRefused, release, scan_kit
from .scaffold import build_lab, new_lab
from .validate import Validation, validate

__all__ = ["Expectations", "Finding", "Leak", "Mutant", "ReleaseRefused", "Validation",
           "build_lab", "lint", "load_expectations", "load_mutants", "new_lab", "release",
           "scan_kit", "split_solution", "validate"]
