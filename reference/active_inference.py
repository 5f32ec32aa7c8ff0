"""Reference solution of the active_inference lab (trusted; never sent to a student).

Generated from reference/active_inference.ipynb by `grader build active_inference`: edit the notebook, not this file.
"""

import itertools
import math
import torch
TRAIN = True
SEED = 0
DEVICE = "cpu"


def infer_states(o, A, prior):
    """Exact posterior p(s | o) for outcome o (an int), A (O, S), prior (S,) -> q (S,), sums to 1."""
    joint = A[int(o), :] * prior
    return joint / joint.sum()


def variational_free_energy(q, o, A, prior):
    """F(q) = sum_s q(s) [ln q(s) - ln A[o, s] - ln prior(s)]: q (S,), o int, A (O, S), prior (S,) -> float."""
    # 0 ln 0 = 0; +inf where q puts mass on a state that o (or the prior) rules out
    joint = A[int(o), :] * prior
    mass = q > 0
    if bool((joint[mass] == 0).any()):
        return math.inf
    qm = q[mass]
    return float((qm * (qm.log() - joint[mass].log())).sum())


def entropy_of_columns(A):
    """H[A[:, s]] for every state s (0 ln 0 = 0), shape (S,)."""
    logs = torch.where(A > 0, A.log(), torch.zeros_like(A))
    return -(A * logs).sum(dim=0)


def expected_free_energy(q, A, B, C, policy):
    """G(policy) = sum over tau of risk KL(A q_tau || softmax(C)) + ambiguity sum_s q_tau(s) H[A[:, s]].

    q (S,), A (O, S), B (S, S, U), C (O,), policy: list[int] of actions -> float.
    """
    # q_tau = B[:, :, policy[tau - 1]] q_{tau - 1}, q_0 = q
    log_pref = torch.log_softmax(C, dim=0)
    logs = torch.where(A > 0, A.log(), torch.zeros_like(A))
    ambiguity = -(A * logs).sum(dim=0)                 # H[A[:, s]] for every state s
    qs, total = q, 0.0
    for u in policy:
        qs = B[:, :, int(u)] @ qs
        qo = A @ qs
        mass = qo > 0
        risk = (qo[mass] * (qo[mass].log() - log_pref[mass])).sum()
        total = total + float(risk) + float(ambiguity @ qs)
    return float(total)


def select_policy(q, A, B, C, policies, gamma=16.0):
    """softmax(-gamma * G) over the policies (a list of lists of actions) -> probs (P,)."""
    energies = [expected_free_energy(q, A, B, C, p) for p in policies]
    G = torch.tensor(energies, dtype=torch.float64)
    return torch.softmax(-gamma * G, dim=0)


def run_agent(env, episodes):
    """Play `episodes` episodes of env (A, B, C, D, reset(), step(action)) -> list of total rewards."""
    # Beliefs start at env.D; after each observation the posterior is inferred exactly; the
    # next action is the one whose policies (every sequence of `horizon` actions, weighted by
    # softmax(-16 G)) hold the most probability: the marginal of the first step. Between
    # steps the belief moves by B[:, :, action].
    horizon = 2
    A, B, C, D = env.A, env.B, env.C, env.D
    actions = B.shape[2]
    policies = [list(p) for p in itertools.product(range(actions), repeat=horizon)]
    totals = []
    for _ in range(episodes):
        obs = env.reset()
        prior, total, done = D, 0.0, False
        while not done:
            q = infer_states(obs, A, prior)
            probs = select_policy(q, A, B, C, policies)
            marginal = torch.zeros(actions, dtype=torch.float64)
            for p, pi in zip(probs, policies):
                marginal[int(pi[0])] += p
            action = int(torch.argmax(marginal))
            obs, reward, done = env.step(action)
            total += float(reward)
            prior = B[:, :, action] @ q
        totals.append(total)
    return totals
