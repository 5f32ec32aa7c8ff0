"""Build the example submissions ``assignments/active_inference/examples/<name>/active_inference.ipynb``.

Run from the repository root:  .venv/bin/python assignments/active_inference/make_examples.py

Each example is the template of ``make_template.py`` with its solution cells filled in; only
the keyed cells differ. ``correct`` is a plain solution; ``different`` is correct but makes
other choices everywhere the contract allows; each ``bug_*`` is ``correct`` with exactly one
change (see examples/README.md). The lab has no checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.authoring.cells import write_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_template import build_notebook  # noqa: E402

CORRECT: dict[str, str] = {
    "infer_states": '''def infer_states(o, A, prior):
    """Exact posterior p(s | o) for outcome o (an int), A (O, S), prior (S,) -> q (S,), sums to 1."""
    joint = A[o, :] * prior
    return joint / joint.sum()
''',
    "variational_free_energy": '''def variational_free_energy(q, o, A, prior):
    """F(q) = sum_s q(s) [ln q(s) - ln A[o, s] - ln prior(s)]: q (S,), o int, A (O, S), prior (S,) -> float."""
    joint = A[o, :] * prior
    support = q > 0
    if (joint[support] == 0).any():
        return math.inf
    qs = q[support]
    return float((qs * (torch.log(qs) - torch.log(joint[support]))).sum())
''',
    "expected_free_energy": '''def entropy_of_columns(A):
    """H[A[:, s]] for every state (0 ln 0 = 0)."""
    logA = torch.where(A > 0, torch.log(A), torch.zeros_like(A))
    return -(A * logA).sum(dim=0)


def expected_free_energy(q, A, B, C, policy):
    """G(policy) = sum over tau of risk KL(A q_tau || softmax(C)) + ambiguity sum_s q_tau(s) H[A[:, s]].

    q (S,), A (O, S), B (S, S, U), C (O,), policy: list[int] of actions -> float.
    """
    log_pref = torch.log_softmax(C, dim=0)
    H = entropy_of_columns(A)
    G = 0.0
    for u in policy:
        q = B[:, :, u] @ q
        qo = A @ q
        logqo = torch.where(qo > 0, torch.log(qo), torch.zeros_like(qo))
        risk = (qo * (logqo - log_pref)).sum()
        ambiguity = (H * q).sum()
        G += float(risk + ambiguity)
    return G
''',
    "select_policy": '''def select_policy(q, A, B, C, policies, gamma=16.0):
    """softmax(-gamma * G) over the policies (a list of lists of actions) -> probs (P,)."""
    G = torch.tensor([expected_free_energy(q, A, B, C, pi) for pi in policies],
                     dtype=torch.float64)
    return torch.softmax(-gamma * G, dim=0)
''',
    "run_agent": '''def run_agent(env, episodes):
    """Play `episodes` episodes of env (A, B, C, D, reset(), step(action)) -> list of total rewards."""
    A, B, C, D = env.A, env.B, env.C, env.D
    n_actions = B.shape[2]
    policies = [list(p) for p in itertools.product(range(n_actions), repeat=2)]
    totals = []
    for _ in range(episodes):
        o = env.reset()
        prior, total, done = D, 0.0, False
        while not done:
            q = infer_states(o, A, prior)
            probs = select_policy(q, A, B, C, policies)
            marginal = torch.zeros(n_actions, dtype=torch.float64)
            for p, pi in zip(probs, policies):
                marginal[pi[0]] += p
            action = int(torch.argmax(marginal))
            o, reward, done = env.step(action)
            total += reward
            prior = B[:, :, action] @ q
        totals.append(total)
    return totals
''',
}

DIFFERENT: dict[str, str] = {
    "infer_states": '''def infer_states(o, A, prior):
    """In log space: softmax(ln A[o] + ln prior); log 0 = -inf gives exactly 0."""
    return torch.softmax(torch.log(A[o]) + torch.log(prior), dim=0)
''',
    "variational_free_energy": '''def variational_free_energy(q, o, A, prior):
    """Energy minus entropy with xlogy; a 0-d tensor; inf from 0 * -inf avoided by xlogy."""
    joint = A[o] * prior
    energy = -torch.special.xlogy(q, joint).sum()      # q > 0 where joint = 0 gives +inf
    neg_entropy = torch.special.xlogy(q, q).sum()
    return energy + neg_entropy
''',
    "expected_free_energy": '''def expected_free_energy(q, A, B, C, policy):
    """Predicted outcomes for the whole policy first, then risk and ambiguity with xlogy."""
    ambiguity_of_state = -torch.special.xlogy(A, A).sum(0)
    log_c = C - torch.logsumexp(C, 0)
    beliefs = []
    for u in policy:
        q = torch.einsum("ts,s->t", B[..., u], q)
        beliefs.append(q)
    Q = torch.stack(beliefs)                       # (T, S)
    QO = Q @ A.T                                   # (T, O)
    risk = torch.special.xlogy(QO, QO).sum() - (QO * log_c).sum()
    return (risk + (Q @ ambiguity_of_state).sum()).item()
''',
    "select_policy": '''def select_policy(q, A, B, C, policies, gamma=16.0):
    """exp(-gamma (G - min G)), normalised by hand."""
    G = torch.tensor([expected_free_energy(q, A, B, C, pi) for pi in policies],
                     dtype=q.dtype)
    w = torch.exp(-gamma * (G - G.min()))
    return w / w.sum()
''',
    "run_agent": '''def run_agent(env, episodes):
    """Myopic (one-step) policies; the action is *sampled* from p(pi), seeded for reproducibility."""
    gen = torch.Generator().manual_seed(1234)
    policies = [[u] for u in range(env.B.shape[-1])]
    rewards = []
    for _ in range(episodes):
        belief_prior = env.D.clone()
        obs = env.reset()
        episode_reward = 0.0
        while True:
            q = infer_states(obs, env.A, belief_prior)
            p = select_policy(q, env.A, env.B, env.C, policies, gamma=16.0)
            u = policies[int(torch.multinomial(p, 1, generator=gen))][0]
            obs, r, finished = env.step(u)
            episode_reward = episode_reward + r
            belief_prior = env.B[:, :, u] @ q
            if finished:
                break
        rewards.append(float(episode_reward))
    return rewards
''',
}


def mutate(cell: str, old: str, new: str) -> dict[str, str]:
    """``correct`` with one line of one cell changed."""
    assert CORRECT[cell].count(old) == 1, (cell, old)
    return {**CORRECT, cell: CORRECT[cell].replace(old, new)}


EXAMPLES: dict[str, dict[str, str]] = {
    "correct": CORRECT,
    "different": DIFFERENT,
    "bug_posterior_not_normalised": mutate("infer_states", "    return joint / joint.sum()",
                                           "    return joint"),
    "bug_free_energy_swapped": {**CORRECT, "variational_free_energy": '''def variational_free_energy(q, o, A, prior):
    """F with the prior and the posterior swapped: sum_s prior(s) [ln prior(s) - ln A[o, s] - ln q(s)]."""
    joint = A[o, :] * q
    support = prior > 0
    if (joint[support] == 0).any():
        return math.inf
    ps = prior[support]
    return float((ps * (torch.log(ps) - torch.log(joint[support]))).sum())
'''},
    "bug_efe_no_ambiguity": mutate("expected_free_energy",
                                   "        G += float(risk + ambiguity)", "        G += float(risk)"),
    "bug_softmax_plus_gamma": mutate("select_policy", "torch.softmax(-gamma * G, dim=0)",
                                     "torch.softmax(gamma * G, dim=0)"),
}


def main() -> int:
    for name, solution in EXAMPLES.items():
        path = HERE / "examples" / name / "active_inference.ipynb"
        write_notebook(build_notebook(solution), path)
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
