"""The registry of reusable checks. Importing this package registers every check kind."""

from . import autoregressive, causality, classifier, functions, gradients, latent, modules, samples  # noqa: F401 - registration side effects
from . import discrete  # noqa: F401 - registration side effects (active_inference lab)
from . import adversarial  # noqa: F401 - registration side effects (gan lab)
from . import flows  # noqa: F401 - registration side effects (flow lab)
from . import diffusion  # noqa: F401 - registration side effects (diffusion lab)
from .registry import REGISTRY, CheckContext, CheckSpec, PropertyFailure, Verdict, check

__all__ = ["REGISTRY", "CheckContext", "CheckSpec", "PropertyFailure", "Verdict", "check"]
