"""The check registry: one decorator, one dict, parameters validated at rubric load.

A check is a function ``fn(ctx, params) -> Verdict`` registered under a kind name.
It talks to the student only through ``ctx.kernel`` (a KernelProxy) and computes
its verdict here, in the grader's process.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import MissingName, StudentException
from ..model import Verdict
from ..protocol import Handle, KernelProxy, Name
from .params import Param, declarations

__all__ = ["manual_seed", "Verdict", "CheckContext", "PropertyFailure", "check", "REGISTRY",
           "CheckSpec", "Metric"]


class PropertyFailure(AssertionError):
    """A property does not hold on one input; hypothesis shrinks it."""

    def __init__(self, message: str, counterexample: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.counterexample = message, counterexample



def manual_seed(seed: int) -> None:
    """``torch.manual_seed`` for the grader's own (CPU) draws. While CUDA is not initialised,
    ``torch.manual_seed`` also queues a lazy CUDA seeding that formats the call stack as text
    (about 2.5 ms a call, a hundred calls a grading); the CPU generator alone draws the same."""
    if torch.cuda.is_initialized():
        torch.manual_seed(seed)
    else:
        torch.random.default_generator.manual_seed(seed)

@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its function and the parameters it accepts, each declared
    (``types``: its own declarations over the shared vocabulary of ``params.py``)."""

    kind: str
    fn: Callable[[CheckContext, dict[str, Any]], Verdict]
    required: frozenset[str]
    optional: frozenset[str]
    doc: str
    types: dict[str, Param] = field(default_factory=dict)
    undeclared: tuple[str, ...] = ()        # parameters with no declaration (a test refuses)
    metric: Metric | None = None            # a metric credited between calibrated anchors


REGISTRY: dict[str, CheckSpec] = {}
_PENDING = object()          # a memo value some task is computing now


@dataclass(frozen=True)
class Metric:
    """What a threshold check measures, for ``grader calibrate``: the verdict's ``details``
    key holding the value, and whether higher is better. Its anchors are the item's
    ``zero_at`` (no credit) and ``full_at`` (full credit)."""

    detail: str
    higher_is_better: bool


def check(kind: str, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
          types: dict[str, Param] | None = None, metric: Metric | None = None
          ) -> Callable[[Callable[..., Verdict]], Callable[..., Verdict]]:
    """Register ``fn`` as the check ``kind`` taking these rubric ``params``; ``types``
    declares those the shared vocabulary does not, or means otherwise here; ``metric``
    makes it a threshold check that ``grader calibrate`` knows how to anchor."""

    def register(fn: Callable[..., Verdict]) -> Callable[..., Verdict]:
        if kind in REGISTRY:
            raise ValueError(f"check kind {kind!r} registered twice")
        names = frozenset(required) | frozenset(optional)
        declared, undeclared = declarations(kind, names, types)
        REGISTRY[kind] = CheckSpec(kind, fn, frozenset(required), frozenset(optional),
                                   (fn.__doc__ or "").strip().split("\n")[0], declared,
                                   tuple(undeclared), metric)
        return fn

    return register


@dataclass
class CheckContext:
    """Everything a check may use: the kernel, the trusted reference, the seed."""

    kernel: KernelProxy
    reference: types.ModuleType
    seed: int
    max_examples: int = 30
    device: str = "cpu"
    _names: dict[str, bool] = field(default_factory=dict)
    _memo: dict[Any, Any] = field(default_factory=dict)

    def memo(self, key: Any, compute: Any) -> Any:
        """``compute()`` once per grading for ``key`` (its exception too): items that need
        the same expensive draw (1,000 samples of a trained model) share it. Items checked
        together (:func:`grader.batching.together`) that ask while another computes it wait
        their turn for its value."""
        from ..batching import wait_turn

        while self._memo.get(key) is _PENDING:
            wait_turn()
        if key not in self._memo:
            self._memo[key] = _PENDING
            try:
                self._memo[key] = (True, compute())
            except Exception as exc:  # noqa: BLE001 - replayed to every item that asks
                self._memo[key] = (False, exc)
            except BaseException:
                del self._memo[key]
                raise
        ok, value = self._memo[key]
        if not ok:
            raise value
        return value

    def require(self, *names: str) -> None:
        """Raise MissingName unless the notebook defines each of ``names``."""
        for name in names:
            if name not in self._names:
                try:
                    self.kernel.get(Name(name), keep=True)
                except StudentException as exc:
                    if exc.ename == "NameError":
                        raise MissingName(f"the notebook defines no `{name}`: run every cell "
                                          "that defines it, and keep its name as given") from None
                    raise
                self._names[name] = True

    def model(self, spec: dict[str, Any]) -> Handle:
        """The student's model a rubric ``model:`` spec names, built in the kernel (cached).

        ``spec`` is ``{class, checkpoint, args}``: ``class(*args)`` loaded from
        ``checkpoint`` with ``weights_only=True`` and put in eval mode, or, without a
        checkpoint, freshly built under the grader's seed.
        """
        cls, checkpoint = spec["class"], spec.get("checkpoint")
        args = tuple(spec.get("args", []))

        def build() -> Handle:
            self.require(cls)
            if checkpoint:
                return self.kernel.load_checkpoint(Name(cls), checkpoint, *args)
            manual_seed(self.seed)
            return self.kernel.call(Name(cls), *args, seed=self.seed, keep=True)

        return self.memo(("model", cls, checkpoint or "", args), build)

    def ref(self, name: str) -> Any:
        """A name from the trusted reference module."""
        try:
            return getattr(self.reference, name)
        except AttributeError:
            raise KeyError(f"the reference defines no `{name}`") from None
