"""Hypothesis strategies for the inputs a rubric describes, and the grading profile.

A rubric names inputs declaratively::

    inputs:
      mu:     {shape: [B, L], min: -5, max: 5}
      logits: {shape: [B, 1, 8, 8], min: -100, max: 100, extremes: true}   # or [-1e4, 1e4]
      x:      {kind: binary, shape: [B, 1, 8, 8]}
      y:      {kind: integers, shape: [B], min: 0, max: 9}      # int64 (class labels)
      g:      {shape: [B], min: -3, max: 3, nonzero: 1.0e-3}     # |value| >= 1e-3
    dims: {B: [1, 16], L: [1, 8]}

Dimensions are drawn first (shrinking towards the smallest), then each array.
Values are float32-representable so a float32 fallback sees the same numbers.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["grading_settings", "input_sets", "run_property", "shapes_of"]

KINDS = ("floats", "binary", "digits", "integers")


def grading_settings(max_examples: int) -> settings:
    """Reproducible and quiet: the same submission always meets the same inputs."""
    return settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                    report_multiple_bugs=False, verbosity=Verbosity.quiet,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate, Phase.shrink])


def shapes_of(spec: dict[str, Any], dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(d if isinstance(d, int) else dims[d] for d in s["shape"])
            for name, s in spec.items()}


def _array(spec: dict[str, Any], shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    kind = spec.get("kind", "floats")
    if kind == "binary":
        return hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0]))
    if kind == "digits":
        pool = _digit_pool(spec.get("split", "test"), spec.get("form", "binary"))
        return st.lists(st.integers(0, len(pool) - 1), min_size=shape[0], max_size=shape[0]).map(
            lambda idx: pool[idx].reshape(shape))
    if kind == "integers":
        lo_i, hi_i = int(spec.get("min", 0)), int(spec.get("max", 9))
        return hnp.arrays(np.int64, shape, elements=st.integers(lo_i, hi_i))
    lo, hi = float(spec.get("min", -10.0)), float(spec.get("max", 10.0))
    elements = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)
    if spec.get("nonzero"):
        gap = float(spec.get("nonzero")) if not isinstance(spec["nonzero"], bool) else 1e-3
        elements = elements.filter(lambda v: abs(v) >= gap)
    extremes = spec.get("extremes")
    if extremes:                  # true: the bounds and 0; a list: these values (may lie outside)
        values = [lo, hi, 0.0] if extremes is True else [float(np.float32(v)) for v in extremes]
        elements = st.one_of(st.sampled_from(values), elements)
    return hnp.arrays(np.float64, shape, elements=elements)


@functools.lru_cache(maxsize=8)
def _digit_pool(split: str, form: str) -> np.ndarray:
    from ..data import digits

    return digits(split, form).double().numpy()


def input_sets(inputs: dict[str, Any], dims: dict[str, Any]
               ) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Dicts of named float64 arrays, as ``inputs`` and ``dims`` describe.

    The drawn sizes ride along under the key ``_dims``. Data pools are loaded here, not
    inside a draw (hypothesis warns about imports and slow work during generation).
    """
    for spec in inputs.values():
        if spec.get("kind") == "digits":
            _digit_pool(spec.get("split", "test"), spec.get("form", "binary"))

    @st.composite
    def draw(draw_fn: Callable[..., Any]) -> dict[str, np.ndarray]:
        sizes = {name: draw_fn(st.integers(int(lo), int(hi))) for name, (lo, hi) in dims.items()}
        shapes = shapes_of(inputs, sizes)
        arrays = {name: draw_fn(_array(spec, shapes[name])) for name, spec in inputs.items()}
        return {**arrays, "_dims": sizes}

    return draw()


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis draws 5 % of values from constants found in the process's local modules
    (hypothesis >= 6.131): the grader's own source, the reference loaded by path, a test
    module. The inputs a submission meets would then depend on which modules happen to be
    imported and on unrelated edits of the code, so a grade would not be reproducible.
    Generation sees no local constants while grading (internal API: a no-op where absent).
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - older or newer hypothesis
        yield
        return
    get, cache = getattr(providers, "_get_local_constants", None), getattr(
        providers, "CONSTANTS_CACHE", None)
    if get is None or cache is None or not hasattr(providers, "Constants"):
        yield
        return
    empty = providers.Constants()
    cache.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = get
        cache.cache.clear()


def _replay(examples: list[Any], test: Callable[[Any], None]
            ) -> tuple[int, BaseException | None]:
    """Run ``test`` on recorded examples in order; the first failure, not shrunk."""
    for n, example in enumerate(examples, 1):
        try:
            test(example)
        except BaseException as exc:  # noqa: BLE001 - the failure, whatever it is
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return n, exc
    return len(examples), None


def run_property(strategy: st.SearchStrategy[Any], test: Callable[[Any], None],
                 max_examples: int) -> tuple[int, BaseException | None]:
    """Run ``test`` on examples; returns (examples tried, the final shrunk failure or None).

    A ``SubmissionError`` that is not about the input (the kernel died, a call timed
    out) stops the search at once: later calls re-raise it without touching the kernel.
    """
    from ..errors import ExecutionTimeout, KernelDied, ProtocolError
    from ..oracle import EXAMPLES, pack_example

    session = EXAMPLES.get()
    if session is not None and session.replaying:
        return _replay(session.replay(), test)
    log = session.record() if session is not None else None
    fatal: list[BaseException] = []
    count = [0]

    def wrapped(example: Any) -> None:
        if fatal:
            raise fatal[0]
        count[0] += 1
        if log is not None:
            log.append(pack_example(example))
        try:
            test(example)
        except (KernelDied, ExecutionTimeout, ProtocolError) as exc:
            fatal.append(exc)
            raise

    runner = grading_settings(max_examples)(given(strategy)(wrapped))
    try:
        with _no_local_constants():
            runner()
    except BaseException as exc:  # noqa: BLE001 - the shrunk failure, whatever it is
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return count[0], (fatal[0] if fatal else exc)
    return count[0], None
