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
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["grading_settings", "input_sets", "run_property", "draw_examples", "first_failure",
           "keyed", "shapes_of", "EXAMPLE_CACHE"]

KINDS = ("floats", "binary", "digits", "integers")
_SEED = 0x6772616465      # "grade": where every derandomised search starts


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

    return keyed(draw(), "input_sets", inputs, dims)


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


_THREAD_RANDOM: list[Any] = []


def _share_thread_random() -> None:
    """Hypothesis gives each thread its own ``Random`` the first time it runs a test there and
    registers it, which runs a full garbage collection (a tenth of a second with torch
    loaded). Checks run in short-lived task threads, one per example: each would pay it. The
    grader seeds every search itself (:func:`_seeded`), so that ``Random`` is never drawn
    from; the task threads share one, registered once per process."""
    import hypothesis.core

    local = hypothesis.core.threadlocal
    if getattr(local, "_hypothesis_global_random", None) is not None:
        return
    if not _THREAD_RANDOM:
        from hypothesis import register_random

        _THREAD_RANDOM.append(random.Random())  # noqa: S311 - never drawn from (see above)
        register_random(_THREAD_RANDOM[0])
    local._hypothesis_global_random = _THREAD_RANDOM[0]


def _seeded(test: Callable[[], None]) -> Callable[[], None]:
    """One fixed seed for every search: derandomised hypothesis otherwise seeds from the test
    function's source, and drawing the inputs up front (:func:`draw_examples`) must meet
    exactly the inputs the search meets (:func:`_search`)."""
    return seed(_SEED)(test)


def keyed(strategy: st.SearchStrategy[Any], *key: Any) -> st.SearchStrategy[Any]:
    """Mark ``strategy`` as fully described by ``key`` (plain data: the rubric's input specs),
    so the examples it yields are drawn once and reused (:func:`draw_examples`)."""
    strategy.grader_key = key  # type: ignore[attr-defined]
    return strategy


def draw_examples(strategy: st.SearchStrategy[Any], max_examples: int) -> list[Any]:
    """The inputs hypothesis tries, in order, when the property holds on all of them.

    Generation with ``derandomize`` depends only on the strategy and on which inputs
    failed: with a test that never fails it is the sequence a passing property meets, the
    same for every submission. Drawing it costs more than the kernel's answers (about
    10 ms an input), so a :func:`keyed` strategy's examples are drawn once per key and
    version of this code, kept in memory and on disk (JSON, never pickle, see
    :class:`ExampleCache`), and every use gets a fresh copy: the first submission and the
    three-hundredth meet the same values of the same types.
    """
    key = getattr(strategy, "grader_key", None)
    if key is None:
        return _draw(strategy, max_examples)
    return EXAMPLE_CACHE.get((key, max_examples), lambda: _draw(strategy, max_examples))


def _draw(strategy: st.SearchStrategy[Any], max_examples: int) -> list[Any]:
    drawn: list[Any] = []

    def keep(example: Any) -> None:
        drawn.append(example)

    _share_thread_random()
    with _no_local_constants():
        _seeded(grading_settings(max_examples)(given(strategy)(keep)))()
    return drawn


class ExampleCache:
    """Drawn examples by key: in memory, and as JSON files in ``GRADER_CACHE`` (default
    ``~/.cache/grader``) shared by a batch's workers and later runs. Only the grader's own
    process writes there (the kernel cannot see it); a file that cannot be read is drawn
    again. The file name hashes the key with hypothesis's version and the source of
    ``grader/checks``, so a change in how inputs are drawn never meets an old file."""

    def __init__(self) -> None:
        self._memory: dict[str, list[Any]] = {}     # packed examples (JSON values)
        self._salt: str | None = None

    def get(self, key: Any, draw: Callable[[], list[Any]]) -> list[Any]:
        from ..oracle import pack_example, unpack_example

        digest = self._digest(key)
        packed = self._memory[digest] if digest in self._memory else self._read(digest)
        if packed is None:
            drawn = draw()
            try:
                packed = [pack_example(e) for e in drawn]
            except TypeError:             # a value JSON cannot hold: nothing to keep
                return drawn
            self._write(digest, json.dumps(packed, separators=(",", ":")))
        self._memory[digest] = packed
        return [unpack_example(e) for e in packed]     # fresh arrays for every use

    def _digest(self, key: Any) -> str:
        if self._salt is None:
            import hypothesis

            source = hashlib.sha256(hypothesis.__version__.encode())
            for path in sorted(Path(__file__).parent.glob("*.py")):
                source.update(path.read_bytes())
            self._salt = source.hexdigest()
        text = json.dumps([self._salt, key], sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @staticmethod
    def _folder() -> Path:
        return Path(os.environ.get("GRADER_CACHE") or Path.home() / ".cache" / "grader") \
            / "examples"

    def _read(self, digest: str) -> list[Any] | None:
        try:
            packed = json.loads((self._folder() / f"{digest}.json").read_text())
        except (OSError, ValueError):
            return None
        return packed if isinstance(packed, list) else None

    def _write(self, digest: str, text: str) -> None:
        folder = self._folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f"{digest}.{os.getpid()}.part"
            part.write_text(text)
            os.replace(part, folder / f"{digest}.json")
        except OSError:
            pass                          # a read-only home: the memory copy serves


EXAMPLE_CACHE = ExampleCache()


def first_failure(examples: list[Any], test: Callable[[Any], None]
                  ) -> tuple[int, BaseException | None]:
    """``test`` on every example, their kernel calls batched (:func:`grader.batching.
    together`): (examples tried, the first failure in order, not shrunk, or None)."""
    from ..batching import together

    for n, result in enumerate(together([functools.partial(test, e) for e in examples]), 1):
        if isinstance(result.error, (KeyboardInterrupt, SystemExit)):
            raise result.error
        if result.error is not None:
            return n, result.error
    return len(examples), None


def run_property(strategy: st.SearchStrategy[Any], test: Callable[[Any], None],
                 max_examples: int) -> tuple[int, BaseException | None]:
    """Run ``test`` on examples; returns (examples tried, the final shrunk failure or None).

    The examples hypothesis would try are drawn first and tested together, their kernel
    calls batched into a few round trips. Only when one fails does hypothesis run the
    property itself, one input at a time, to find the smallest failing input (the same
    search as always: it meets the same inputs first). A ``SubmissionError`` that is not
    about the input (the kernel died, a call timed out) stops the search at once: later
    calls re-raise it without touching the kernel.
    """
    from ..oracle import EXAMPLES, pack_example

    session = EXAMPLES.get()
    if session is not None and session.replaying:
        return first_failure(session.replay(), test)
    log = session.record() if session is not None else None
    examples = draw_examples(strategy, max_examples)
    if log is not None:
        log.extend(pack_example(example) for example in examples)
    tried, failure = first_failure(examples, test)
    if failure is None or _is_fatal(failure):
        return tried, failure
    if log is not None:
        del log[:]
    shrunk_tried, shrunk = _search(strategy, test, max_examples, log)
    # hypothesis meets the same inputs first; should it not fail (a submission whose answers
    # change between runs), the failure already seen stands, unshrunk
    return (shrunk_tried, shrunk) if shrunk is not None else (tried, failure)


def _is_fatal(error: BaseException) -> bool:
    from ..errors import ExecutionTimeout, KernelDied, ProtocolError

    return isinstance(error, (KernelDied, ExecutionTimeout, ProtocolError))


def _search(strategy: st.SearchStrategy[Any], test: Callable[[Any], None], max_examples: int,
            log: list[Any] | None) -> tuple[int, BaseException | None]:
    """Hypothesis runs ``test`` itself, one input at a time, and shrinks a failure."""
    from ..oracle import pack_example

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
        except BaseException as exc:
            if _is_fatal(exc):
                fatal.append(exc)
            raise

    runner = _seeded(grading_settings(max_examples)(given(strategy)(wrapped)))
    _share_thread_random()
    try:
        with _no_local_constants():
            runner()
    except BaseException as exc:  # noqa: BLE001 - the shrunk failure, whatever it is
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return count[0], (fatal[0] if fatal else exc)
    return count[0], None
