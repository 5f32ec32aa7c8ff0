"""Many calls into a kernel, one round trip: run independent tasks together.

A check's property is written as plain sequential code: call the student's function on an
input, compare with the reference, maybe call again. Thirty inputs used to cost thirty (or
ninety) round trips of a few milliseconds each, which is most of a grading. ``together``
runs one task per input, *cooperatively*: exactly one task runs at a time, until it asks a
kernel something (``KernelProxy.request``); then the next task runs. When every task is
waiting or done, the questions of all of them go to the kernel as one batch request
(:meth:`KernelProxy.request_many`), each task gets its own answer (or its own exception)
and they run on, in the same order, to their next question. A property of one call per
input costs one round trip; one that calls, then differentiates, two.

Nothing about trust changes: every step is the same request as before, answered by the
same kernel code with the same size and time bounds, and the verdict is computed here.
What changes is the order in which the kernel executes calls of different inputs (all
first calls, then all second calls), which a correct submission cannot notice: LABS.md
promises no state carried between calls except the seeds the grader sets per call.

Tasks run on threads (reused: :class:`_Worker`), but never concurrently: a task runs only
while the scheduler waits for it, so grader-side code needs no locks. Each task runs in a
copy of the caller's context (context variables) and with the caller's autograd mode.
``together`` nests: a task that runs ``together`` itself batches its inner tasks' questions
with its siblings'.
"""

from __future__ import annotations

import contextvars
import random
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from .protocol import Outcome

if TYPE_CHECKING:
    from .protocol import KernelProxy

Result = Outcome
"""What one task ended with: its value (``value()`` raises the task's exception instead)."""

__all__ = ["together", "gather", "batched", "batched_many", "wait_turn", "Result"]

_ROUTE = threading.local()          # .task: the _Task this thread runs, if any


def _signal() -> threading.Lock:
    """A one-shot hand-over between two threads: ``release()`` signals, ``acquire()`` waits.
    Every hand-over here strictly alternates (the scheduler wakes a task, then waits for it),
    so a plain lock, created held, does what ``Semaphore(0)`` does, in C: the semaphore's
    condition variable cost a third of the scheduling time of a grading."""
    lock = threading.Lock()
    lock.acquire()
    return lock


class _Task:
    def __init__(self, scheduler: _Scheduler, fn: Callable[[], Any]) -> None:
        self.scheduler, self.fn = scheduler, fn
        self.go = _signal()
        self.asked: list[tuple[KernelProxy, dict[str, Any]]] | None = None
        self.answers: list[Outcome] = []
        self.result: Result | None = None
        self.stuck = False
        self.context = contextvars.copy_context()
        self.grad = torch.is_grad_enabled()

    def _body(self) -> None:
        self.go.acquire()
        _ROUTE.task = self
        try:
            with torch.set_grad_enabled(self.grad):
                self.result = Result(self.context.run(self.fn))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as the task's end
            self.result = Result(error=exc)
        finally:
            _ROUTE.task = None
            self.scheduler.back.release()

    def ask(self, questions: list[tuple[KernelProxy, dict[str, Any]]]) -> list[Outcome]:
        """Called on this task's thread: wait for the batch that carries ``questions`` (none:
        just let the others run one round). The grader's random generators are the task's
        own across the wait: what the others draw meanwhile does not shift its draws."""
        state = _random_state()
        self.asked = questions
        self.scheduler.back.release()
        self.go.acquire()
        _set_random_state(state)
        answers, self.answers = self.answers, []
        return answers


class _Worker:
    """A thread that runs task bodies one after another. A grading runs several hundred
    tasks, a few dozen at a time: starting a thread for each cost about 0.3 ms of CPU and a
    context switch; an idle worker waits for the next body instead. A body leaves nothing
    behind in the thread (its context variables, autograd mode and route are the task's and
    restored), and a body that never ends keeps its worker, which then never idles."""

    IDLE_MAX = 256
    _idle: list[_Worker] = []
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.job: Callable[[], None] | None = None
        self.wake = _signal()
        threading.Thread(target=self._loop, daemon=True, name="grader-task").start()

    @classmethod
    def run(cls, job: Callable[[], None]) -> None:
        with cls._lock:
            worker = cls._idle.pop() if cls._idle else None
        worker = worker or cls()
        worker.job = job
        worker.wake.release()

    def _loop(self) -> None:
        while True:
            self.wake.acquire()
            job, self.job = self.job, None
            if job is not None:
                job()
            with self._lock:
                if len(self._idle) >= self.IDLE_MAX:
                    return
                self._idle.append(self)


class _Scheduler:
    def __init__(self) -> None:
        self.back = _signal()

    def run(self, fns: Sequence[Callable[[], Any]]) -> list[Result]:
        tasks = [_Task(self, fn) for fn in fns]
        for task in tasks:
            _Worker.run(task._body)
        runnable = tasks
        while runnable:
            for task in runnable:                 # one at a time, in order
                task.go.release()
                self.back.acquire()               # it asked something, or it ended
            waiting = [t for t in tasks if t.asked is not None]
            if not waiting:
                break
            questions = [q for t in waiting for q in t.asked or ()]
            if not questions and len(waiting) == len(runnable):
                for task in waiting:         # all wait for each other: nothing can change
                    task.answers, task.asked = [], None
                    task.stuck = True
                runnable = waiting
                continue
            outcomes = _ask(questions)
            at = 0
            for task in waiting:
                count = len(task.asked or ())
                task.answers, task.asked = outcomes[at:at + count], None
                at += count
            runnable = waiting
        return [t.result or Result(error=RuntimeError("a task did not finish")) for t in tasks]


def _ask(questions: list[tuple[KernelProxy, dict[str, Any]]]) -> list[Outcome]:
    """Answer questions to one or more kernels: one batch per kernel, answers in order."""
    outcomes: list[Outcome | None] = [None] * len(questions)
    proxies: dict[int, KernelProxy] = {}
    for proxy, _ in questions:
        proxies.setdefault(id(proxy), proxy)
    for key, proxy in proxies.items():
        slots = [n for n, (p, _) in enumerate(questions) if id(p) == key]
        steps = [questions[n][1] for n in slots]
        outer = getattr(_ROUTE, "task", None)
        answers = (outer.ask([(proxy, s) for s in steps]) if outer is not None
                   else proxy.request_many(steps))
        for n, answer in zip(slots, answers):
            outcomes[n] = answer
    return [o for o in outcomes if o is not None]


def together(fns: Sequence[Callable[[], Any]]) -> list[Result]:
    """Run ``fns`` as cooperative tasks whose kernel requests are batched; one Result each,
    in order. A single function runs directly (nothing to batch)."""
    if len(fns) == 1:
        try:
            return [Result(fns[0]())]
        except BaseException as exc:  # noqa: BLE001 - as a task would end
            return [Result(error=exc)]
    return _Scheduler().run(fns)


def wait_turn() -> None:
    """Inside a task: let the other tasks run a round (while waiting for something one of
    them computes). Raises RuntimeError when every task waits: no one can make progress."""
    task = getattr(_ROUTE, "task", None)
    if task is None:
        return
    task.ask([])
    if task.stuck:
        raise RuntimeError("every task waits for another: nothing can make progress")


def _random_state() -> tuple[Any, ...]:
    """The global generators the grader's own code draws from: torch's CPU generator (the
    reference's draws) and Python's ``random``. NumPy's global generator is not kept: no
    grader-side code draws from it (data and metrics use seeded ``default_rng`` generators),
    and reading and writing its 2.5 KB state was 70 us a wait, a fifth of an autoregressive
    grading's CPU."""
    return torch.get_rng_state(), random.getstate()


def _set_random_state(state: tuple[Any, ...]) -> None:
    torch.set_rng_state(state[0])
    random.setstate(state[1])


def gather(fns: Sequence[Callable[[], Any]]) -> list[Any]:
    """Every ``fn()``'s value, their kernel calls batched; the first exception (in order)
    is raised, as calling them one after another would have."""
    return [result.value() for result in together(fns)]


def batched_many(proxy: KernelProxy, steps: list[dict[str, Any]]) -> list[Outcome] | None:
    """As :func:`batched`, for steps that must stay together and in order (a chain whose
    ``$back`` references count within it): they go in one batch, contiguous."""
    task = getattr(_ROUTE, "task", None)
    if task is None:
        return None
    return task.ask([(proxy, step) for step in steps])


def batched(proxy: KernelProxy, op: str, fields: dict[str, Any]) -> Outcome | None:
    """The answer to a request made inside a task (after its batch went), or None outside
    one (then the caller sends the request itself)."""
    task = getattr(_ROUTE, "task", None)
    if task is None:
        return None
    return task.ask([(proxy, {"op": op, **fields})])[0]
