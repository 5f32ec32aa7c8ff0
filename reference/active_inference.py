"""Trusted reference of the active-inference lab (LABS.md section 7).

A discrete generative model: ``A (O,S)`` with columns p(o | s), ``B (S,S,U)`` with
``B[:, :, u]`` columns p(s' | s, u), ``C (O,)`` log-preferences over outcomes, ``D (S,)``
the prior over initial states; every tensor float64. Exact Bayesian state inference, the
variational free energy of any belief, the expected free energy (risk + ambiguity) of a
policy, softmax policy selection and an agent that plays an environment episode by
episode. The grader reads this file by path; it never enters the student's kernel. Only
torch is imported, so it can also run as a notebook cell.
"""

import itertools
import math

import torch

__all__ = ["infer_states", "variational_free_energy", "expected_free_energy",
           "select_policy", "run_agent", "entropy_of_columns", "first_action"]


def infer_states(o, A, prior):
    """Exact posterior p(s | o) proportional to A[o, s] * prior(s), shape (S,)."""
    joint = A[int(o), :] * prior
    return joint / joint.sum()


def variational_free_energy(q, o, A, prior):
    """F(q) = sum_s q(s) [ln q(s) - ln A[o, s] - ln prior(s)] (0 ln 0 = 0), a float.

    +inf where q puts mass on a state that o (or the prior) rules out.
    """
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
    """G = sum over tau of KL(A q_tau || softmax(C)) + sum_s q_tau(s) H[A[:, s]], a float.

    q_tau = B[:, :, policy[tau - 1]] q_{tau - 1}, q_0 = q.
    """
    log_pref = torch.log_softmax(C, dim=0)
    ambiguity = entropy_of_columns(A)
    qs, total = q, 0.0
    for u in policy:
        qs = B[:, :, int(u)] @ qs
        qo = A @ qs
        mass = qo > 0
        risk = (qo[mass] * (qo[mass].log() - log_pref[mass])).sum()
        total = total + float(risk) + float(ambiguity @ qs)
    return float(total)


def select_policy(q, A, B, C, policies, gamma=16.0):
    """p(pi) = softmax(-gamma G(pi)) over the policies, shape (P,)."""
    G = torch.tensor([expected_free_energy(q, A, B, C, p) for p in policies],
                     dtype=torch.float64)
    return torch.softmax(-gamma * G, dim=0)


def first_action(probs, policies, actions):
    """The action whose policies hold the most probability (the marginal of the first step)."""
    marginal = torch.zeros(actions, dtype=torch.float64)
    for p, pi in zip(probs, policies):
        marginal[int(pi[0])] += p
    return int(torch.argmax(marginal))


def run_agent(env, episodes, horizon=2):
    """Play ``episodes`` episodes; returns the total reward of each.

    Beliefs start at env.D; after each observation the posterior is inferred exactly;
    the next action is the first step of the policies of length ``horizon`` (every
    sequence of actions), weighted by softmax(-16 G). Between steps the belief moves
    by B[:, :, action].
    """
    A, B, C, D = env.A, env.B, env.C, env.D
    actions = B.shape[2]
    policies = [list(p) for p in itertools.product(range(actions), repeat=horizon)]
    totals = []
    for _ in range(episodes):
        o = env.reset()
        prior, total, done = D, 0.0, False
        while not done:
            q = infer_states(o, A, prior)
            probs = select_policy(q, A, B, C, policies)
            action = first_action(probs, policies, actions)
            o, reward, done = env.step(action)
            total += float(reward)
            prior = B[:, :, action] @ q
        totals.append(total)
    return totals
