"""One round trip for many calls: cooperative tasks, batch requests, batched properties."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import nbformat
import pytest
import torch

from grader import batching
from grader.batching import batched, together
from grader.checks.registry import PropertyFailure
from grader.checks.strategies import _search, draw_examples, keyed, run_property
from grader.errors import ExecutionTimeout, StudentException
from grader.execute import ExecutionRecord, run_notebook
from grader.protocol import KernelProxy, Name, Outcome
from grader.sandbox import KernelSession, Limits

REPO = Path(__file__).resolve().parent.parent


class FakeKernel:
    """Answers ``square`` requests as KernelProxy would, counting round trips."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def request(self, op: str, **fields: Any) -> Any:
        routed = batched(self, op, fields)       # type: ignore[arg-type]
        if routed is not None:
            return routed.value()
        return self.request_many([{"op": op, **fields}])[0].value()

    def request_many(self, steps: list[dict[str, Any]]) -> list[Outcome]:
        self.batches.append(steps)
        return [Outcome(error=StudentException("ValueError", "negative", ""))
                if s["x"] < 0 else Outcome(value=s["x"] ** 2) for s in steps]


def test_independent_tasks_share_round_trips() -> None:
    kernel = FakeKernel()

    def task(x: int) -> Any:
        first = kernel.request("square", x=x)
        return first, kernel.request("square", x=first + 1)

    results = together([lambda x=x: task(x) for x in range(10)])
    assert [r.value() for r in results] == [(x * x, (x * x + 1) ** 2) for x in range(10)]
    assert len(kernel.batches) == 2 and [len(b) for b in kernel.batches] == [10, 10]
    assert [s["x"] for s in kernel.batches[0]] == list(range(10))      # in task order


def test_a_failing_call_fails_its_own_task_only() -> None:
    kernel = FakeKernel()
    results = together([lambda x=x: kernel.request("square", x=x) for x in (2, -1, 3)])
    assert [None if r.error else r.value() for r in results] == [4, None, 9]
    assert isinstance(results[1].error, StudentException) and len(kernel.batches) == 1


def test_tasks_of_different_lengths_and_no_calls() -> None:
    kernel = FakeKernel()

    def task(n: int) -> int:
        total = 0
        for x in range(n):
            total += kernel.request("square", x=x)
        return total

    results = together([lambda n=n: task(n) for n in (0, 3, 1, 5)])
    assert [r.value() for r in results] == [0, 5, 0, 30]
    assert [len(b) for b in kernel.batches] == [3, 2, 2, 1, 1]


def test_nested_tasks_batch_with_their_siblings() -> None:
    kernel = FakeKernel()

    def inner(base: int) -> list[int]:
        return [r.value() for r in together([lambda x=x: kernel.request("square", x=x)
                                           for x in (base, base + 1)])]

    results = together([lambda b=b: inner(b) for b in (1, 10)])
    assert [r.value() for r in results] == [[1, 4], [100, 121]]
    assert len(kernel.batches) == 1 and len(kernel.batches[0]) == 4


def test_tasks_see_the_callers_context_and_autograd_mode() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    with torch.no_grad():
        results = together([lambda: (var.get(), torch.is_grad_enabled())] * 2)
    assert [r.value() for r in results] == [("caller", False)] * 2


def test_a_batched_property_meets_the_inputs_hypothesis_would_and_shrinks_the_same() -> None:
    strategy = st.lists(st.integers(-100, 100), min_size=1, max_size=5)
    seen: list[Any] = []
    assert run_property(strategy, seen.append, 25) == (25, None)
    classic: list[Any] = []
    assert _search(strategy, classic.append, 25, None) == (25, None)
    assert seen == classic == draw_examples(strategy, 25)

    def small(xs: list[int]) -> None:
        if sum(xs) > 50:
            raise PropertyFailure("too big", {"inputs": {"xs": xs}})

    tried, failure = run_property(strategy, small, 25)
    _, expected = _search(strategy, small, 25, None)
    assert isinstance(failure, PropertyFailure)
    assert failure.counterexample == expected.counterexample == {"inputs": {"xs": [51]}}


def test_keyed_examples_are_drawn_once_and_copied(tmp_path: Path, monkeypatch) -> None:
    from grader.checks import strategies

    monkeypatch.setenv("GRADER_CACHE", str(tmp_path))
    monkeypatch.setattr(strategies, "EXAMPLE_CACHE", strategies.ExampleCache())
    drawn = []

    def count(n: int) -> int:
        drawn.append(n)
        return n

    make = lambda: keyed(st.integers(0, 1000).map(count), "test", 1)   # noqa: E731
    first = draw_examples(make(), 10)
    assert len(drawn) == 10 and draw_examples(make(), 10) == first and len(drawn) == 10
    monkeypatch.setattr(strategies, "EXAMPLE_CACHE", strategies.ExampleCache())
    assert draw_examples(make(), 10) == first and len(drawn) == 10    # from disk
    assert len(list(tmp_path.glob("examples/*.json"))) == 1
    assert draw_examples(keyed(st.integers(0, 1000).map(count), "test", 2), 10) == first
    assert len(drawn) == 20                                           # another key: drawn


@pytest.mark.kernel
def test_one_request_answers_every_call_in_a_real_kernel() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import time, torch\n"
        "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x * 2\n"
        "def slow(x):\n    time.sleep(30)\n"
        "def big(n):\n    return torch.zeros(n)\n")]
    limits = Limits(call_timeout_s=2, total_timeout_s=60, reply_mb=1)

    def start() -> KernelSession:
        session = KernelSession({}, limits)
        session.start()
        return session

    session = run_notebook(nb, start, ExecutionRecord())
    try:
        kernel = KernelProxy(session)
        kernel.get(Name("f"))
        before = kernel.calls
        out = kernel.request_many([{"op": "call", "target": {"$name": "f"}, "args": [x]}
                                   for x in (1, -1, 3)])
        assert kernel.calls == before + 1
        assert out[0].value() == 2 and out[2].value() == 6
        with pytest.raises(StudentException, match="negative"):
            out[1].value()
        # a call past its time ends the batch: it times out, the rest are not run
        out = kernel.request_many([{"op": "call", "target": {"$name": n}, "args": [1]}
                                   for n in ("f", "slow", "f")])
        assert out[0].value() == 2
        for outcome in out[1:]:
            with pytest.raises(ExecutionTimeout):
                outcome.value()
        assert kernel.get(Name("f")) is not None                  # the kernel lives on
        # answers past half of reply_mb are deferred and asked again: more round trips,
        # never an oversized reply (tensors counted as they inflate: zeros travel compressed)
        before = kernel.calls
        out = kernel.request_many([{"op": "call", "target": {"$name": "big"},
                                    "args": [80_000]}] * 6)      # 320 kB each
        assert all(o.value().shape == (80_000,) for o in out)
        assert kernel.calls - before >= 3
    finally:
        session.close()


def test_a_memo_asked_by_tasks_together_is_computed_once() -> None:
    from grader.checks.registry import CheckContext

    kernel = FakeKernel()
    ctx = CheckContext(kernel, None, seed=0)  # type: ignore[arg-type]
    computed = []

    def compute() -> int:
        computed.append(1)
        return kernel.request("square", x=kernel.request("square", x=3))   # two rounds

    results = together([lambda: ctx.memo("draw", compute)] * 3)
    assert [r.value() for r in results] == [81] * 3 and len(computed) == 1
    assert len(kernel.batches) == 2 and all(len(b) == 1 for b in kernel.batches)


def test_task_threads_are_reused_and_leave_no_route_or_grad_mode_behind() -> None:
    """Workers run one body after another: a second ``together`` runs on the same threads,
    and a task sees its caller's autograd mode, not what the thread's last task left."""
    def named() -> str:
        return threading.current_thread().name

    def ident() -> int:
        return threading.get_ident()

    first = {r.value() for r in batching.together([ident] * 4)}
    with torch.no_grad():
        modes = [r.value() for r in batching.together([torch.is_grad_enabled] * 4)]
    second = {r.value() for r in batching.together([ident] * 4)}
    assert modes == [False] * 4
    assert [r.value() for r in batching.together([torch.is_grad_enabled] * 4)] == [True] * 4
    assert second & first and {r.value() for r in batching.together([named] * 2)} == {
        "grader-task"}
    assert getattr(batching._ROUTE, "task", None) is None
