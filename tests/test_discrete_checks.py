"""Pure parts of grader/checks/discrete.py and grader/envs/tmaze.py, and the remote T-maze.

The kernel tests grade notebooks made of the trusted reference plus one cell (an attack on
the T-maze's record, or an agent that does not play) and talk to a sandboxed kernel
through the stdin callback channel directly.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.checks.discrete import (discrete_inputs, free_energy, played_episodes,
                                    stochastic_array)
from grader.envs import TMaze
from grader.pipeline import grade
from grader.protocol import KernelProxy

REPO = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=40, derandomize=True, deadline=None, database=None)


def reference():
    spec = importlib.util.spec_from_file_location("ai_ref", REPO / "reference" /
                                                  "active_inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = reference()


@FAST
@given(st.data())
def test_stochastic_arrays_have_columns_that_sum_to_one(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    zeros = data.draw(st.booleans())
    arr = data.draw(stochastic_array(shape, zeros))
    cols = arr.reshape(shape[0], -1)
    assert arr.shape == shape and arr.dtype == np.float64
    assert np.allclose(cols.sum(axis=0), 1.0, atol=1e-12) and (arr >= 0).all()
    if not zeros:
        assert (arr > 0).all()


def test_stochastic_arrays_with_zeros_do_hold_exact_zeros() -> None:
    seen = []

    @settings(max_examples=30, derandomize=True, database=None)
    @given(stochastic_array((4, 3), zeros=True))
    def collect(arr: np.ndarray) -> None:
        seen.append((arr == 0).any())

    collect()
    assert any(seen)


@FAST
@given(discrete_inputs({"o": {"kind": "outcome", "likelihood": "A", "prior": "prior"},
                        "A": {"kind": "stochastic", "shape": ["O", "S"], "zeros": True},
                        "prior": {"kind": "stochastic", "shape": ["S"], "zeros": True},
                        "policies": {"kind": "policies", "actions": "U", "length": [1, 3],
                                     "count": [2, 4]},
                        "gamma": {"kind": "scalar", "min": 0.5, "max": 32}},
                       {"O": [1, 5], "S": [1, 5], "U": [1, 3]}))
def test_discrete_inputs_respect_their_specs(example: dict) -> None:
    dims = example["_dims"]
    assert list(example) == ["o", "A", "prior", "policies", "gamma", "_dims"]
    assert example["A"].shape == (dims["O"], dims["S"])
    assert (example["A"] @ example["prior"])[example["o"]] > 0
    assert 2 <= len(example["policies"]) <= 4
    assert len({len(p) for p in example["policies"]}) == 1
    assert all(0 <= u < dims["U"] for p in example["policies"] for u in p)
    assert isinstance(example["gamma"], float) and 0.5 <= example["gamma"] <= 32


def test_free_energy_is_surprise_plus_kl() -> None:
    A = torch.tensor([[0.7, 0.2, 0.0], [0.3, 0.8, 1.0]], dtype=torch.float64)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    joint = A[0] * prior
    post = joint / joint.sum()
    surprise = -math.log(float(joint.sum()))
    assert free_energy(post, joint) == pytest.approx(surprise, abs=1e-14)
    q = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    kl = float((q[:2] * (q[:2] / post[:2]).log()).sum())
    assert free_energy(q, joint) == pytest.approx(surprise + kl, abs=1e-14)
    assert free_energy(torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64), joint) == math.inf
    assert free_energy(q, joint) == R.variational_free_energy(q, 0, A, prior)


def test_tmaze_model_is_stochastic_and_cue_is_exact() -> None:
    env = TMaze(seed=3)
    assert torch.allclose(env.A.sum(0), torch.ones(8, dtype=torch.float64))
    assert torch.allclose(env.B.sum(0), torch.ones(8, 4, dtype=torch.float64))
    assert env.D.sum() == 1 and env.A.dtype == env.C.dtype == torch.float64
    for _ in range(20):
        assert env.reset() == 0
        obs, reward, done = env.step(1)
        assert obs == (1 if env.episodes[-1].context == "left" else 2) and not done
        obs, reward, done = env.step(2 if obs == 1 else 3)
        assert done and reward == (1.0 if obs == 3 else 0.0)
    assert env.summary()["correct_arm"] == 20 and env.summary()["cue_visited"] == 20


def test_tmaze_refuses_bad_requests_and_changes_nothing() -> None:
    env = TMaze(seed=0)
    assert env.answer({"method": "step", "args": [1]})["ok"] is False       # before reset
    assert env.answer({"method": "reset", "args": []}) == {"ok": True, "value": 0}
    for bad in (None, "reset", {"method": "reset"}, {"method": "step", "args": [True]},
                {"method": "step", "args": [4]}, {"method": "step", "args": [1.5]},
                {"method": "step", "args": []}, {"method": "episodes", "args": []},
                {"method": "__class__", "args": [1]}):
        reply = env.answer(bad)
        assert reply["ok"] is False and isinstance(reply["error"], str), bad
    assert env.episodes[-1].actions == [] and env.steps == 0
    assert env.answer({"method": "step", "args": [2]})["value"][2] is True
    assert env.answer({"method": "step", "args": [1]})["ok"] is False        # episode over
    assert json.dumps(env.answer({"method": "reset", "args": []}))


def test_reference_agent_takes_the_cued_arm_and_a_risk_only_agent_does_not() -> None:
    env = TMaze(seed=0)
    totals = R.run_agent(env, 40)
    assert len(totals) == 40 and env.summary()["correct_arm"] == 40
    assert totals == [e.reward for e in env.episodes]

    original = R.expected_free_energy

    def risk_only(q, A, B, C, policy):
        qs, ambiguity = q, 0.0
        for u in policy:
            qs = B[:, :, u] @ qs
            ambiguity += float(R.entropy_of_columns(A) @ qs)
        return original(q, A, B, C, policy) - ambiguity

    R.expected_free_energy = risk_only
    try:
        env = TMaze(seed=0)
        R.run_agent(env, 40)
    finally:
        R.expected_free_energy = original
    assert env.summary()["cue_visited"] == 0 and env.summary()["correct_arm"] < 30


class _FakeClient:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def input(self, text: str) -> None:
        self.sent.append(text)


def test_stdin_questions_are_bounded_and_parsed_defensively() -> None:
    asked: list = []

    def handler(question):
        asked.append(question)
        return {"ok": True, "value": 1}

    client = _FakeClient()
    for prompt in ("x" * 5000, "not json", json.dumps({"method": "reset", "args": []})):
        msg = {"msg_type": "input_request", "content": {"prompt": prompt}}
        assert KernelProxy._answer_stdin(client, msg, handler) is None
    assert asked == [None, None, {"method": "reset", "args": []}]
    assert client.sent == [json.dumps({"ok": True, "value": 1})] * 3

    def broken(question):
        raise KeyError("grader bug")

    failure = KernelProxy._answer_stdin(client, {"msg_type": "input_request",
                                                 "content": {"prompt": "{}"}}, broken)
    assert isinstance(failure, KeyError) and json.loads(client.sent[-1])["ok"] is False


def _submission(folder: Path, extra: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"grader": {"assignment": "active_inference"}})
    nb.cells = [nbformat.v4.new_code_cell("TRAIN = False\nSEED = 0\nDEVICE = 'cpu'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell((REPO / "reference" / "active_inference.py")
                                          .read_text()),
                nbformat.v4.new_code_cell(extra)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "active_inference.ipynb")
    return folder


ATTACKS = {
    "claims_rewards_without_playing": '''
def run_agent(env, episodes):
    return [1.0] * episodes
''',
    "rewrites_the_record_and_the_methods": '''
import builtins, json
def run_agent(env, episodes):
    env.episodes = [{"arm": "left", "context": "left"}] * episodes
    env.summary = lambda: {"correct_arm": episodes}
    for _ in range(episodes):
        try:
            builtins.input(json.dumps({"method": "record", "args": [{"correct_arm": 40}]}))
        except Exception:
            pass
        env.reset()
        env.step(2)                      # a blind guess: right about half the time
    type(env).step = lambda self, a: (3, 1.0, True)
    return [1.0] * episodes
''',
    "plays_many_more_blind_episodes": '''
def run_agent(env, episodes):
    for _ in range(episodes * 3):
        env.reset()
        o, r, done = env.step(2)
    return [1.0] * episodes
''',
}


@pytest.mark.kernel
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_agent_record_cannot_be_forged_from_the_kernel(attack: str, tmp_path: Path) -> None:
    report = grade(_submission(tmp_path / attack, ATTACKS[attack]), only={"run_agent_tmaze"})
    item = report["items"][0]
    assert item["outcome"] == "failed", item
    assert item["details"]["share"] < 0.75, item["details"]
    assert not item["needs_review"]


@pytest.mark.kernel
def test_the_reference_agent_passes_through_the_stdin_channel(tmp_path: Path) -> None:
    report = grade(_submission(tmp_path / "ref", "pass"), only={"run_agent_tmaze"})
    item = report["items"][0]
    assert item["outcome"] == "passed", item
    assert item["details"]["correct_arm"] == 40 and item["details"]["steps"] == 80


def test_tmaze_stops_answering_after_its_request_budget() -> None:
    env = TMaze(seed=0, max_requests=5)
    replies = [env.answer({"method": "reset", "args": []}) for _ in range(7)]
    assert [r["ok"] for r in replies] == [True] * 5 + [False] * 2
    assert len(env.episodes) == 5


def test_numpy_float_infinities_cross_the_kernel_boundary() -> None:
    """A numpy-inside F returns np.float64(inf) (LABS.md: +inf allowed; np.float64 is a
    float): the kernel side must send it as the plain "inf" the grader's decoder accepts
    (numpy 2 writes repr(np.float64(inf)) as "np.float64(inf)")."""
    from grader.protocol import decode

    spec = importlib.util.spec_from_file_location(
        "probe_server", REPO / "grader" / "sandbox" / "probe_server.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    for value in (np.float64("inf"), np.float64("-inf"), math.inf, np.float64(2.5)):
        back = decode(json.loads(json.dumps(probe._encode(value))))
        assert type(back) is float and back == float(value)
    assert math.isnan(decode(json.loads(json.dumps(probe._encode(np.float64("nan"))))))


def test_an_episode_the_agent_never_stepped_in_is_not_played() -> None:
    """An agent that resets ahead of its next episode resets once more after its last: the
    share of cued arms and the totals it reports are over the 40 it played, not 41."""
    env = TMaze(seed=0)
    totals = R.run_agent(env, 40)
    env.reset()
    played = played_episodes(env)
    assert env.summary()["episodes"] == 41 and len(played) == 40
    assert sum(e.correct for e in played) == 40
    assert totals == [e.reward for e in played]
    idle = TMaze(seed=0)
    for _ in range(40):
        idle.reset()                                   # never steps: plays nothing
    assert played_episodes(idle) == []
