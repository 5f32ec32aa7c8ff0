"""Similar submissions: pairs of a class ranked by how much of their own code they share."""

from .compare import Options, Pair, SimilarityResult, find_similar
from .report import COLUMNS, write_results
from .sources import Submitted, read_class

__all__ = ["COLUMNS", "Options", "Pair", "SimilarityResult", "Submitted", "find_similar",
           "read_class", "write_results"]
