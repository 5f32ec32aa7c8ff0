"""Build the student template ``assignments/active_inference/active_inference.ipynb``.

Run from the repository root:  .venv/bin/python assignments/active_inference/make_template.py

The notebook is a list of cells; the cells a student completes have a key (``infer_states``,
``variational_free_energy``, ``expected_free_energy``, ``select_policy``, ``run_agent``).
``make_examples.py`` builds the example submissions from the same list, replacing only keyed
cells, so every example has the template's structure, parameters cell and metadata. The
``tmaze`` cell is a copy of ``grader/envs/tmaze.py`` (the environment the grader plays), so
students can try their agent; the grader uses its own copy, never the notebook's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grader.authoring.cells import keyed_notebook, write_notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

METADATA = {
    "grader": {"assignment": "active_inference"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

INTRO = r"""# Lab 7 — Active inference: beliefs, free energy, preferred outcomes

You will write, for a discrete generative model, exact Bayesian state inference, the variational
free energy of a belief, the expected free energy of a policy, policy selection, and an agent
that plays a T-maze with them.

**What you submit:** this notebook, `active_inference.ipynb` (there is no checkpoint).

**How it is graded.** The grader runs your notebook, then imports only the five names below and
calls them on models it draws at random (any numbers of outcomes, states and actions; strictly
positive matrices and matrices with exact zeros; policies of several lengths), always with
`float64` tensors, and compares with what it computes itself. `run_agent` plays the grader's own
T-maze (the one in the cell below), whose record of the arms you entered is what counts.
It never reads what your notebook prints. So:

- keep the names, argument order, shapes and return types exactly as documented in each stub;
- handle exact zeros: $0 \ln 0 = 0$ (`torch.special.xlogy(p, p)` or `torch.where`), and never
  let a zero probability turn into `nan`;
- `run_agent` may use only `env.A`, `env.B`, `env.C`, `env.D`, `env.reset()` and
  `env.step(action)`: during grading `env` is a stand-in whose state lives in the grader.
"""

THEORY = r"""## Background

**The model.** Hidden states $s \in \{0..S-1\}$, outcomes $o \in \{0..O-1\}$, actions
$u \in \{0..U-1\}$:

| tensor | shape | meaning |
|---|---|---|
| `A` | (O, S) | `A[o, s]` $= p(o \mid s)$: every column sums to 1 |
| `B` | (S, S, U) | `B[s', s, u]` $= p(s' \mid s, u)$: every column of `B[:, :, u]` sums to 1 |
| `C` | (O,) | log-preferences over outcomes: the preferred distribution is $\tilde p(o) = \mathrm{softmax}(C)$ |
| `D` | (S,) | prior over the initial state |

**State inference.** After observing $o$ with prior belief $p(s)$, the exact posterior is
$$q(s) = p(s \mid o) = \frac{A[o, s]\, p(s)}{p(o)}, \qquad p(o) = \sum_s A[o, s]\, p(s).$$

**Variational free energy.** For any belief $q$ over states,
$$F(q) = \sum_s q(s)\,\big[\ln q(s) - \ln A[o, s] - \ln p(s)\big]
= -\ln p(o) + \mathrm{KL}\big(q \,\|\, p(s \mid o)\big) \;\ge\; -\ln p(o),$$
with equality exactly at the posterior. Terms with $q(s) = 0$ contribute 0; a belief that puts
mass on a state the outcome (or the prior) rules out has $F = +\infty$.

**Expected free energy of a policy** $\pi = (u_1, \dots, u_T)$ (a list of actions), from the
current belief $q_0 = q$: predict $q_\tau = B[:, :, u_\tau]\, q_{\tau - 1}$ and the outcomes
$A q_\tau$, and sum over $\tau = 1..T$
$$G(\pi) = \sum_{\tau=1}^{T} \Big(\underbrace{\mathrm{KL}\big(A q_\tau \,\|\, \mathrm{softmax}(C)\big)}_{\text{risk}}
+ \underbrace{\textstyle\sum_s q_\tau(s)\, \mathrm{H}\big[A[:, s]\big]}_{\text{ambiguity}}\Big),
\qquad \mathrm{H}[p] = -\sum_o p(o) \ln p(o).$$
Risk drives the agent towards preferred outcomes; ambiguity away from states whose outcomes say
little about them (which is what makes it look for information). Policies are evaluated from the
current belief only (no future observations are simulated).

**Policy selection.** $p(\pi) = \mathrm{softmax}(-\gamma\, G)$ over the candidate policies, with
precision $\gamma$ (default 16). Low expected free energy means high probability.

**The T-maze.** The agent starts at the centre; one arm holds the reward, the other not; which one
changes from episode to episode (50/50) and is hidden. The foot of the T holds a cue that shows,
without noise, which arm it is. The agent has two moves per episode; entering an arm ends it.
A good agent goes to the cue first, then to the arm the cue shows.
"""

IMPORTS = """import itertools
import math

import torch
"""

PARAMETERS = """TRAIN = True      # runs the demo cell at the end (there is nothing to train); the grader skips it
SEED = 0
DEVICE = "cpu"
"""

MD_INFER = """## 1. State inference

Checked against the grader's posterior on random models (with and without exact zeros), and
that it is a probability vector.
"""

INFER = '''def infer_states(o, A, prior):
    """Exact posterior p(s | o) for outcome o (an int), A (O, S), prior (S,) -> q (S,), sums to 1."""
    raise NotImplementedError
'''

MD_VFE = """## 2. Variational free energy

The grader computes $p(o)$ and the posterior itself and checks $F(q) \\ge -\\ln p(o)$ for beliefs of
every kind (positive, sparse, with mass where the outcome is impossible), with equality at the
posterior. Return a Python float (or a 0-d tensor); `float("inf")` where $F = +\\infty$.
"""

VFE = '''def variational_free_energy(q, o, A, prior):
    """F(q) = sum_s q(s) [ln q(s) - ln A[o, s] - ln prior(s)]: q (S,), o int, A (O, S), prior (S,) -> float."""
    raise NotImplementedError
'''

MD_EFE = """## 3. Expected free energy

Checked against the grader's value for random models and policies of length 1 to 3.
"""

EFE = '''def expected_free_energy(q, A, B, C, policy):
    """G(policy) = sum over tau of risk KL(A q_tau || softmax(C)) + ambiguity sum_s q_tau(s) H[A[:, s]].

    q (S,), A (O, S), B (S, S, U), C (O,), policy: list[int] of actions -> float.
    """
    raise NotImplementedError
'''

MD_SELECT = """## 4. Policy selection

Checked against the grader's probabilities (default and other precisions) and that they sum to 1.
"""

SELECT = '''def select_policy(q, A, B, C, policies, gamma=16.0):
    """softmax(-gamma * G) over the policies (a list of lists of actions) -> probs (P,)."""
    raise NotImplementedError
'''

MD_TMAZE = """## 5. The T-maze

This is the grader's environment (a copy of `grader/envs/tmaze.py`; do not edit it, the grader
uses its own). States `s = 2 * location + context` (locations 0 centre, 1 cue, 2 left arm, 3 right
arm; context 0: reward left, 1: reward right); outcomes 0 centre, 1 cue says left, 2 cue says
right, 3 reward, 4 no reward; action `u` moves to location `u` (arms are absorbing).
"""

MD_AGENT = """## 6. The agent

`run_agent(env, episodes)` plays `episodes` episodes and returns the total reward of each. In each
episode: `o = env.reset()`; start from the prior `env.D`; then, until `done`, infer the posterior
from the last outcome, score candidate policies with `select_policy`, take an action
(`o, reward, done = env.step(action)`; `action` an int), and predict the next prior with
`B[:, :, action] @ q`. Which policies you consider (e.g. every sequence of 2 actions, or of the
moves left) and how you pick the action from their probabilities (e.g. the action with the largest
total probability of the policies that start with it) is your choice.
The grader plays 40 episodes and expects the cued rewarding arm in at least 90 % of them.
"""

AGENT = '''def run_agent(env, episodes):
    """Play `episodes` episodes of env (A, B, C, D, reset(), step(action)) -> list of total rewards."""
    raise NotImplementedError
'''

MD_DEMO = """## Try it

Runs only when `TRAIN` is true (the grader sets it false). A good agent visits the cue and then
enters the rewarding arm in every episode (it finds the reward there 80 % of the time).
"""

DEMO = '''if TRAIN:
    env = TMaze(seed=SEED)
    totals = run_agent(env, 100)
    print(env.summary())
    print(f"mean reward {sum(totals) / len(totals):.2f}; cued arm in "
          f"{100 * env.summary()['correct_arm'] / len(env.episodes):.0f} % of the episodes")
'''

SUBMIT = """## Before you submit

- Restart the kernel and run all cells: the notebook must run top to bottom.
- Do not rename anything the stubs define; do not change the `parameters` cell.
"""


def tmaze_source() -> str:
    """The grader's T-maze, verbatim, as a notebook cell."""
    return (ROOT / "grader" / "envs" / "tmaze.py").read_text()


# (kind, key, source); key names the cells a solution replaces.
CELLS: list[tuple[str, str, str]] = [
    ("markdown", "intro", INTRO),
    ("markdown", "theory", THEORY),
    ("code", "imports", IMPORTS),
    ("code", "parameters", PARAMETERS),
    ("markdown", "md-infer", MD_INFER),
    ("code", "infer_states", INFER),
    ("markdown", "md-vfe", MD_VFE),
    ("code", "variational_free_energy", VFE),
    ("markdown", "md-efe", MD_EFE),
    ("code", "expected_free_energy", EFE),
    ("markdown", "md-select", MD_SELECT),
    ("code", "select_policy", SELECT),
    ("markdown", "md-tmaze", MD_TMAZE),
    ("code", "tmaze", "<tmaze>"),
    ("markdown", "md-agent", MD_AGENT),
    ("code", "run_agent", AGENT),
    ("markdown", "md-demo", MD_DEMO),
    ("code", "demo", DEMO),
    ("markdown", "submit", SUBMIT),
]

SOLUTION_KEYS = ("infer_states", "variational_free_energy", "expected_free_energy",
                 "select_policy", "run_agent")


def build_notebook(solution: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The template, with the keyed cells in ``solution`` replaced by its sources."""
    cells = [(kind, key, tmaze_source() if source == "<tmaze>" else source)
             for kind, key, source in CELLS]
    return keyed_notebook(cells, METADATA, solution, SOLUTION_KEYS)


def main() -> int:
    write_notebook(build_notebook(), HERE / "active_inference.ipynb")
    print(f"wrote {HERE / 'active_inference.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
