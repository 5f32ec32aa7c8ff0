"""What a check's rubric parameters may be: types, ranges and defaults, checked at load time.

Every parameter a check kind accepts has a declaration: from the shared vocabulary below (a
name means the same thing in every check: ``rtol`` is always a number >= 0), or the kind's own
(``@check(..., types={...})``), which overrides the vocabulary for that kind. A parameter with
no declaration is refused when the check registers, so a kind cannot forget one.
``load_rubric`` (and so ``grader lint``) validates every item's values before any student is
graded: ``rtol: abc`` is a RubricError naming the file, line, key and the fix, never an error
halfway through a batch.

A declaration is a :class:`Param`: what the value must be (``kind``, shown in messages), a
function saying why a value is wrong (or None), and the default the check uses when the rubric
leaves it out (documentation: a check still owns its default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Param", "VOCABULARY", "number", "integer", "string", "choice", "boolean",
           "list_of", "mapping", "mapping_of", "one_of", "interval", "anything", "problems",
           "INPUT_KINDS", "GENERATED_INPUTS", "LITERAL_INPUTS", "SIZE", "declarations"]

Why = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Param:
    """One parameter's declaration."""

    kind: str                       # what the value must be, e.g. "a number >= 0"
    why: Why                        # why a value is not that, or None
    default: Any = None             # what the check uses when the rubric leaves it out

    def problem(self, value: Any) -> str | None:
        return self.why(value)

    def __call__(self, default: Any) -> Param:
        """The same declaration with a documented default: ``number(min=0)(1e-6)``."""
        return Param(self.kind, self.why, default)


def _under(where: str, problem: str) -> str:
    """``problem`` of an element, prefixed by where the element is (``.key`` or ``[i]``)."""
    return where + (problem if problem.startswith((".", "[")) else " " + problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(*, min: float | None = None, max: float | None = None,  # noqa: A002 - as in hypothesis
           above: float | None = None, below: float | None = None) -> Param:
    """A finite number within [min, max] (or strictly above / below)."""
    bounds = [f">= {min:g}" if min is not None else "", f"<= {max:g}" if max is not None else "",
              f"> {above:g}" if above is not None else "",
              f"< {below:g}" if below is not None else ""]
    kind = " and ".join(["a number", *filter(None, bounds)]).replace("number and", "number", 1)

    def why(value: Any) -> str | None:
        if not _is_number(value) or not math.isfinite(value):
            return f"must be {kind}, got {value!r}"
        if (min is not None and value < min) or (max is not None and value > max) or \
                (above is not None and value <= above) or (below is not None and value >= below):
            return f"must be {kind}, got {value!r}"
        return None

    return Param(kind, why)


def integer(*, min: int | None = None, max: int | None = None) -> Param:  # noqa: A002
    """A whole number within [min, max]."""
    kind = "a whole number" + (f" >= {min}" if min is not None else "") + \
        (f" <= {max}" if max is not None else "")

    def why(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool) or \
                (min is not None and value < min) or (max is not None and value > max):
            return f"must be {kind}, got {value!r}"
        return None

    return Param(kind, why)


def string() -> Param:
    """A non-empty string (a name of the notebook, a reference function...)."""

    def why(value: Any) -> str | None:
        return None if isinstance(value, str) and value else \
            f"must be a non-empty string, got {value!r}"

    return Param("a name (a string)", why)


def choice(*values: Any) -> Param:
    """One of ``values``."""
    kind = "one of " + ", ".join(map(str, values))

    def why(value: Any) -> str | None:
        return None if any(value == v and type(value) is type(v) for v in values) else \
            f"must be {kind}, got {value!r}"

    return Param(kind, why)


def boolean() -> Param:
    return choice(True, False)


def anything(kind: str = "any value") -> Param:
    return Param(kind, lambda _value: None)


def list_of(item: Param, *, min_len: int = 0, max_len: int | None = None) -> Param:
    """A list whose every element is ``item``."""
    kind = f"a list of {item.kind}" + (f" (at least {min_len})" if min_len else "")

    def why(value: Any) -> str | None:
        if not isinstance(value, list) or len(value) < min_len or \
                (max_len is not None and len(value) > max_len):
            return f"must be {kind}, got {value!r}"[:300]
        for i, element in enumerate(value):
            problem = item.problem(element)
            if problem:
                return _under(f"[{i}]", problem)
        return None

    return Param(kind, why)


def mapping(fields: dict[str, Param], *, required: tuple[str, ...] = (),
            extra: Param | None = None, name: str = "") -> Param:
    """A mapping with these keys (``required`` ones must be there); other keys are refused
    unless ``extra`` declares them. ``name`` says what it is in messages."""
    kind = name or "a mapping with keys " + ", ".join(fields)

    def why(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be {kind}, got {value!r}"[:300]
        missing = [k for k in required if k not in value]
        if missing:
            return f"needs the key `{missing[0]}` ({kind})"
        for key, element in value.items():
            spec = fields.get(key, extra)
            if spec is None:
                return f"has the unknown key `{key}` (known: {', '.join(fields)})"
            problem = spec.problem(element)
            if problem:
                return _under(f".{key}", problem)
        return None

    return Param(kind, why)


def mapping_of(value_param: Param, what: str = "name") -> Param:
    """A mapping from names to ``value_param`` (inputs by name, dims by symbol)."""
    kind = f"a mapping {what} -> {value_param.kind}"

    def why(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be {kind}, got {value!r}"[:300]
        for key, element in value.items():
            problem = value_param.problem(element)
            if problem:
                return _under(f".{key}", problem)
        return None

    return Param(kind, why)


def one_of(*options: Param) -> Param:
    """Any of ``options`` (the first option's message when none fits)."""
    kind = " or ".join(o.kind for o in options)

    def why(value: Any) -> str | None:
        found = [o.problem(value) for o in options]
        if all(found):
            return f"must be {kind}, got {value!r}"[:300]
        return None

    return Param(kind, why)


def interval(item: Param) -> Param:
    """``[lo, hi]`` with lo <= hi (a range of sizes or values)."""
    pair = list_of(item, min_len=2, max_len=2)

    def why(value: Any) -> str | None:
        problem = pair.problem(value)
        if problem:
            return problem
        return None if value[0] <= value[1] else f"must be [lo, hi] with lo <= hi, got {value!r}"

    return Param(f"[lo, hi] of {item.kind}", why)


# ---------------------------------------------------------------- the shared vocabulary

INPUT_KINDS = ("floats", "binary", "digits", "integers", "int", "stochastic", "scalar",
               "policy", "policies", "outcome")
SIZE = one_of(integer(min=0), string())           # a size or a dims symbol
_NUMBER = number()
_NAMES = list_of(string())
_INPUT_SPEC = mapping({
    "kind": choice(*INPUT_KINDS), "shape": list_of(SIZE), "min": _NUMBER, "max": _NUMBER,
    "dtype": choice("float", "long", "int64", "float32", "float64"),
    "nonzero": one_of(boolean(), number(above=0)),
    "extremes": one_of(boolean(), list_of(number(), min_len=1)),
    "split": choice("train", "test"), "form": choice("binary", "continuous", "scaled"),
    "dim": string(), "value": anything(), "zeros": boolean(), "actions": SIZE,
    "length": one_of(interval(integer(min=0)), string()), "count": interval(integer(min=1)),
    "likelihood": string(), "prior": string()},
    name="an input spec ({shape: [...], kind, min, max, ...}: docs/rubrics.md)")
GENERATED_INPUTS = mapping_of(_INPUT_SPEC)          # drawn by hypothesis from these specs
LITERAL_INPUTS = mapping_of(one_of(_NUMBER, list_of(anything())))   # fixed values
_MODULE = mapping({"class": string(), "args": list_of(anything()),
                   "kwargs": mapping_of(anything()), "checkpoint": string(), "attr": string()},
                  required=("class",))
_DATA = mapping({"name": choice("digits", "moons"), "split": choice("train", "test"),
                 "form": choice("binary", "continuous", "scaled"), "n": integer(min=1)})

VOCABULARY: dict[str, Param] = {
    # what is called
    "function": string(), "method": string(), "reference": string(), "forward": string(),
    "moments": string(), "module": _MODULE, "model": _MODULE, "flow": _MODULE,
    "generator": _MODULE, "discriminator": _MODULE, "torch": string(),
    "args": _NAMES, "forward_args": _NAMES, "returns": _NAMES, "wrt": _NAMES,
    "cotangent": string(), "output": integer(min=0),
    # generated inputs
    "inputs": GENERATED_INPUTS,
    "dims": mapping_of(interval(integer(min=0)), "symbol"),
    "max_examples": integer(min=1, max=1000),
    # tolerances and steps
    "rtol": number(min=0), "atol": number(min=0), "rtol32": number(min=0),
    "atol32": number(min=0), "tol": number(min=0), "tol32": number(min=0),
    "fd_tol": number(min=0), "fd_eps": number(above=0), "eps": number(above=0),
    "precision": choice("float32", "float64"), "alpha": number(above=0, below=1),
    # data, samples, metrics
    "data": _DATA, "samples": integer(min=2), "n": integer(min=1), "repeats": integer(min=2),
    "zero_at": _NUMBER, "full_at": _NUMBER, "z": number(above=0),
    "binarize": boolean(), "value_range": interval(_NUMBER),
    "sampler": mapping({"function": string(), "T": integer(min=1)}, required=("function",)),
    "min_share": number(min=0, max=1), "classes": integer(min=2), "batch": integer(min=1),
    "latent_dim": integer(min=1), "lr": number(min=0), "redraw": number(min=0),
    # shapes, axes, schedules
    "shape": list_of(SIZE, min_len=1), "axis": one_of(integer(min=0), choice("flat")),
    "min": _NUMBER, "max": _NUMBER, "range": interval(_NUMBER),
    "T": integer(min=1), "schedule": string(), "schedule_args": list_of(anything()),
    "generator_loss": string(), "discriminator_loss": string(),
    "mean": string(), "log_variance": string(),
    # environments
    "env": string(), "env_params": mapping_of(anything()), "episodes": integer(min=1),
    "timeout": number(above=0),
}

def declarations(kind: str, names: frozenset[str], own: dict[str, Param] | None
                 ) -> tuple[dict[str, Param], list[str]]:
    """Each of ``names`` declared: the kind's ``own`` over the vocabulary; and the names
    that have no declaration at all (a test refuses any)."""
    own = own or {}
    unknown = sorted(set(own) - names)
    if unknown:
        raise ValueError(f"check {kind!r} declares types for {unknown}, which it does not take")
    out = {n: own.get(n) or VOCABULARY[n] for n in names if n in own or n in VOCABULARY}
    return out, sorted(names - set(out))


def problems(params: dict[str, Any], declared: dict[str, Param]) -> list[tuple[str, str]]:
    """(key, why) for each parameter whose value its declaration refuses, and each dims
    symbol a generated input's shape uses without ``dims`` declaring it."""
    out = []
    for key, value in params.items():
        spec = declared.get(key)
        problem = spec.problem(value) if spec is not None else None
        if problem:
            out.append((key, problem))
    if out or declared.get("inputs") is not GENERATED_INPUTS:
        return out
    dims = params.get("dims") or {}
    for name, spec in (params.get("inputs") or {}).items():
        for size in spec.get("shape", []) if isinstance(spec, dict) else []:
            if isinstance(size, str) and size not in dims:
                out.append(("inputs", f".{name}.shape uses the symbol `{size}`, which `dims` "
                                      f"does not declare (dims: {', '.join(dims) or 'none'})"))
    return out
