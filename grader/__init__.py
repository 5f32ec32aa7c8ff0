"""grader: sandboxed, property-based grading of deep generative model labs."""

__version__ = "0.1.0"
__all__ = ["__version__"]
