"""The T-maze of the active-inference lab (LABS.md section 7), played in the grader's process.

The agent starts at the centre of a T. One arm holds the reward (with probability
``reward_prob`` per visit; the other arm with ``1 - reward_prob``); which arm is the
episode's hidden context, drawn fresh (50/50) at every ``reset``. A cue location at
the foot of the T shows, without noise, which arm it is. The agent has ``moves``
moves per episode; entering an arm ends the episode.

Hidden states ``s = 2 * location + context`` (S = 8): locations 0 centre, 1 cue,
2 left arm, 3 right arm; context 0 = reward left, 1 = reward right.
Outcomes (O = 5): 0 centre, 1 cue says left, 2 cue says right, 3 reward, 4 no reward.
Actions (U = 4): go to location u; from an arm nothing moves (arms are absorbing).

The parameters are chosen so that the expected free energy (risk + ambiguity)
strictly prefers visiting the cue first: going to the cue costs ln Z - ln 2, an arm
at even odds ln Z - ln 2 - m + H(reward_prob), with m = (C[3] + C[4]) / 2 the mean
log-preference of the arm outcomes and Z the normaliser of softmax(C). With
reward_prob 0.8 (H = 0.5004) and m = 0.2 the cue is better by 0.30 nats, and the
best two-step policy (cue, cue) beats the next (cue, arm) by that much: no correct
agent meets an exact tie that changes its action. An agent that leaves out the
ambiguity term sees the arms 0.2 nats *better* than the cue and enters an arm
blindly (half of its episodes go to the wrong arm).

``TMaze`` records every episode (context, cue visited, arm entered, rewards) in its
own ``episodes`` list: graders read that record, never what the agent reports.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["TMaze", "Episode", "tmaze_model"]

CENTRE, CUE, LEFT, RIGHT = 0, 1, 2, 3
ARMS = {LEFT: "left", RIGHT: "right"}


def tmaze_model(reward_prob: float = 0.8, reward_pref: float = 3.0,
                no_reward_pref: float = -2.6) -> dict[str, torch.Tensor]:
    """The generative model ``A, B, C, D`` (float64) of the T-maze."""
    states, outcomes, actions = 8, 5, 4
    A = torch.zeros(outcomes, states, dtype=torch.float64)
    for ctx in (0, 1):
        A[0, 2 * CENTRE + ctx] = 1.0
        A[1 + ctx, 2 * CUE + ctx] = 1.0
        for arm in (LEFT, RIGHT):
            rewarding = (arm == LEFT) == (ctx == 0)
            p = reward_prob if rewarding else 1.0 - reward_prob
            A[3, 2 * arm + ctx] = p
            A[4, 2 * arm + ctx] = 1.0 - p
    B = torch.zeros(states, states, actions, dtype=torch.float64)
    for u in range(actions):
        for loc in range(4):
            for ctx in (0, 1):
                to = loc if loc in ARMS else u
                B[2 * to + ctx, 2 * loc + ctx, u] = 1.0
    C = torch.tensor([0.0, 0.0, 0.0, reward_pref, no_reward_pref], dtype=torch.float64)
    D = torch.zeros(states, dtype=torch.float64)
    D[2 * CENTRE + 0] = D[2 * CENTRE + 1] = 0.5
    return {"A": A, "B": B, "C": C, "D": D}


@dataclass
class Episode:
    """What happened in one episode, as the grader saw it."""

    context: str                       # "left" or "right": the rewarding arm
    actions: list[int] = field(default_factory=list)
    cue_visited: bool = False
    arm: str | None = None             # the arm entered, if any
    reward: float = 0.0
    done: bool = False

    @property
    def correct(self) -> bool:
        return self.arm == self.context


class TMaze:
    """The T-maze with the interface of LABS.md: ``A, B, C, D``, ``reset()``, ``step(a)``."""

    def __init__(self, seed: int = 0, reward_prob: float = 0.8, moves: int = 2,
                 reward_pref: float = 3.0, no_reward_pref: float = -2.6,
                 max_requests: int = 100_000) -> None:
        model = tmaze_model(reward_prob, reward_pref, no_reward_pref)
        self.A, self.B, self.C, self.D = model["A"], model["B"], model["C"], model["D"]
        self.reward_prob, self.moves, self.max_requests = reward_prob, moves, max_requests
        self.requests = 0
        self._rng = random.Random(seed)  # noqa: S311 - reproducible contexts, not secrets
        self.episodes: list[Episode] = []
        self.steps = 0
        self._loc, self._ctx = CENTRE, 0

    @property
    def _current(self) -> Episode | None:
        return self.episodes[-1] if self.episodes else None

    def _observe(self) -> int:
        if self._loc == CENTRE:
            return 0
        if self._loc == CUE:
            return 1 + self._ctx
        rewarding = (self._loc == LEFT) == (self._ctx == 0)
        p = self.reward_prob if rewarding else 1.0 - self.reward_prob
        return 3 if self._rng.random() < p else 4

    def reset(self) -> int:
        """Start an episode: a new hidden context, the agent at the centre."""
        self._ctx = self._rng.randrange(2)
        self._loc = CENTRE
        self.episodes.append(Episode(context="left" if self._ctx == 0 else "right"))
        return self._observe()

    def step(self, action: int) -> tuple[int, float, bool]:
        """Move to location ``action``; returns (observation, reward, done)."""
        episode = self._current
        if episode is None:
            raise RuntimeError("call env.reset() before env.step()")
        if episode.done:
            raise RuntimeError("the episode is over: call env.reset() to start the next one")
        if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < 4:
            raise ValueError(f"action must be an int in 0..3, got {action!r}")
        self.steps += 1
        episode.actions.append(action)
        if self._loc not in ARMS:
            self._loc = action
        if self._loc == CUE:
            episode.cue_visited = True
        obs = self._observe()
        reward = 1.0 if obs == 3 else 0.0
        episode.reward += reward
        if self._loc in ARMS:
            episode.arm = ARMS[self._loc]
        episode.done = episode.arm is not None or len(episode.actions) >= self.moves
        return obs, reward, episode.done

    def answer(self, request: Any) -> dict[str, Any]:
        """One question of a remote agent (JSON-decoded, untrusted) -> a JSON answer.

        ``{"method": "reset", "args": []}`` or ``{"method": "step", "args": [action]}``
        (what ``KernelProxy.remote`` objects send); errors come back as
        ``{"ok": False, "error": text}`` and change nothing.
        """
        self.requests += 1
        if self.requests > self.max_requests:
            return {"ok": False, "error": f"more than {self.max_requests} calls: stopping"}
        if not isinstance(request, dict) or not isinstance(request.get("args"), list):
            return {"ok": False, "error": "malformed request"}
        method, args = request.get("method"), request["args"]
        try:
            if method == "reset" and not args:
                return {"ok": True, "value": self.reset()}
            if method == "step" and len(args) == 1:
                obs, reward, done = self.step(args[0])
                return {"ok": True, "value": [obs, reward, done]}
        except (RuntimeError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"{str(method)[:40]}() takes "
                f"{'no arguments' if method == 'reset' else 'one action'}"
                if method in ("reset", "step") else f"unknown method {str(method)[:40]!r}"}

    def summary(self) -> dict[str, Any]:
        """Counts over the recorded episodes."""
        n = len(self.episodes)
        return {"episodes": n, "correct_arm": sum(e.correct for e in self.episodes),
                "wrong_arm": sum(e.arm is not None and not e.correct for e in self.episodes),
                "no_arm": sum(e.arm is None for e in self.episodes),
                "cue_visited": sum(e.cue_visited for e in self.episodes), "steps": self.steps}
