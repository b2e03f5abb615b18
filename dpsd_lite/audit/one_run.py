"""The one-run audit: a valid ε lower bound from ONE training run, with canaries of random membership.

Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run"
(NeurIPS 2023; arXiv:2305.08846). Framework and assumptions:

* m **canaries** (records the auditor picks: here private records, by default
  given a wrong label so that memorising them is visible) are each included in
  the training set **independently with probability 1/2**, by a secret coin
  flip (:func:`draw_membership`, the operating system's entropy unless a seed
  is given for a lesson or a test). Everything else in the training set is
  fixed. ONE model is trained.
* The auditor scores every canary from the released model alone (here:
  −loss on the canary's label, :func:`loss_scores`), guesses "in" for its
  k+ highest scores and "out" for its k− lowest, and abstains on the rest:
  r = k+ + k− guesses, v of them correct.
* Corollary 5.4 of the paper (arXiv v1, the "ternary guesses" form of its
  Theorem 5.2): if the training algorithm is (ε, δ)-DP with respect to each
  canary's inclusion, then for every v

      P[V ≥ v] ≤ f(v) + 2·m·δ · max_{i=1..m} (f(v − i) − f(v)) / i,
      f(v) = P[Binomial(r, e^ε/(1 + e^ε)) ≥ v].

  The right side is the p-value of the observed v under "the algorithm is
  (ε, δ)-DP" (:func:`one_run_p_value`). The **ε lower bound at confidence
  1 − β** is the largest ε whose p-value is still ≤ β
  (:func:`one_run_epsilon_from_counts`): with probability ≥ 1 − β over the
  coin flips and the training randomness, an (ε, δ)-DP algorithm never yields
  a bound above its ε. So the bound is comparable only with an ε **per
  record** (DP-SGD, the teacher ensemble); the per-query ε of the ``label``,
  ``rr`` and ``data`` modes is not a claim about records at all.

:func:`one_run_epsilon_lower_bound` either uses (k+, k−) fixed in advance,
or, by default, a small grid of (k+, k−) pairs declared before seeing any
score (it depends on m only) and reports the best of them, each tested at
level β / (number of pairs): a union bound, so the best is still valid at
confidence 1 − β. :func:`plant_one_run_canaries` draws the canaries and the
secret membership; :func:`one_run_attack` scores a trained model;
:func:`one_run_audit` plants, trains (a function you pass) and scores in one call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import bdtrc, expit, gammaln, xlog1py, xlogy
from scipy.stats import fisher_exact

from ..data import DataSplits
from ..errors import DpsdError
from ..noise import NoiseSource
from .metrics import NO_RECORD_CLAIM, AttackResult, _logits, attack_metrics, clopper_pearson, loss_scores

__all__ = [
    "ONE_RUN_GUESS_FRACTIONS",
    "one_run_p_value",
    "one_run_epsilon_from_counts",
    "one_run_guesses",
    "one_run_guess_grid",
    "one_run_epsilon_lower_bound",
    "draw_membership",
    "OneRunCanaries",
    "plant_one_run_canaries",
    "one_run_exposure",
    "one_run_attack",
    "one_run_audit",
]

#: Fractions of the m canaries guessed on, half "in" (highest scores) and half "out" (lowest), tried by
#: :func:`one_run_epsilon_lower_bound` when no (k+, k−) is given. Declared here, before any score is seen.
ONE_RUN_GUESS_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """P-value of v correct guesses out of r under "(ε, δ)-DP", m randomised canaries.

    Steinke, Nasr & Jagielski 2023, Corollary 5.4 (ternary guesses; arXiv
    2305.08846 v1, pp. 15–16): with W ~ Binomial(r, e^ε/(1 + e^ε)) and
    f(u) = P[W ≥ u],

        P[V ≥ v] ≤ f(v) + 2·m·δ · max_{i=1..m} (f(v − i) − f(v)) / i,

    where f(v − i) − f(v) = P[v − i ≤ W < v]. For i ≥ v that difference is
    P[W < v], largest divided by i at i = v, so the max over i = 1..v is the
    same (v ≤ r ≤ m). Returns the right side, capped at 1.
    """
    m, r, v = int(m), int(r), int(v)
    if not 0 <= v <= r <= m:
        raise DpsdError(f"one-run audit: need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise DpsdError(f"one-run audit: need epsilon >= 0 and 0 <= delta <= 1, got {epsilon}, {delta}")
    q = float(expit(epsilon))  # e^ε/(1+e^ε): the accuracy of ε-DP randomized response on one bit
    tail = 1.0 if v == 0 else float(bdtrc(v - 1, r, q))  # f(v) = P[W ≥ v] = P[W > v − 1]
    if delta == 0 or v == 0:
        return min(1.0, tail)
    w = np.arange(v - 1, -1, -1)  # v−1, v−2, …, 0
    log_pmf = gammaln(r + 1) - gammaln(w + 1) - gammaln(r - w + 1) + xlogy(w, q) + xlog1py(r - w, -q)
    below = np.cumsum(np.exp(log_pmf))  # entry i−1: P[v − i ≤ W < v] = f(v − i) − f(v), i = 1..v
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(1.0, tail + 2 * m * delta * alpha)


def one_run_epsilon_from_counts(m: int, r: int, v: int, delta: float = 0.0, confidence: float = 0.95,
                                tol: float = 1e-5) -> float:
    """The largest ε (to ``tol``) whose p-value (:func:`one_run_p_value`) is ≤ β = 1 − ``confidence``; 0 if none.

    Any ε returned has p-value ≤ β (bisection keeps that invariant), which is
    all validity needs: if the algorithm is ε*-DP it is ε-DP for every ε ≥ ε*,
    so P[some ε ≥ ε* has p-value ≤ β] ≤ β.
    """
    beta = 1 - float(confidence)
    if not 0 < beta < 1:
        raise DpsdError(f"confidence must be in (0, 1), got {confidence}")
    p = lambda e: one_run_p_value(m, r, v, e, delta)
    if r == 0 or p(0.0) > beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while p(hi) <= beta:  # the p-value tends to 1 as ε grows (unless v = 0 — excluded above), so this ends
        lo, hi = hi, 2 * hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p(mid) <= beta else (lo, mid)
    return lo


def one_run_guesses(scores, k_plus: int, k_minus: int) -> np.ndarray:
    """+1 for the ``k_plus`` highest scores, −1 for the ``k_minus`` lowest, 0 (abstain) otherwise; shape (m,).

    Ties are broken by position, which the secret membership draw is
    independent of (a stable sort), so tie-breaking never uses membership.
    """
    scores = np.asarray(scores, float)
    m, k_plus, k_minus = len(scores), int(k_plus), int(k_minus)
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > m:
        raise DpsdError(f"one-run audit: need k_plus, k_minus >= 0 and k_plus + k_minus <= m={m}, "
                        f"got {k_plus}, {k_minus}")
    order = np.argsort(-scores, kind="stable")
    guess = np.zeros(m, dtype=np.int8)
    guess[order[:k_plus]] = 1
    guess[order[m - k_minus:]] = -1
    return guess


def one_run_guess_grid(m: int) -> list:
    """The (k+, k−) pairs tried when none is given: for each of ``ONE_RUN_GUESS_FRACTIONS``, that fraction of
    the m canaries, half guessed in, half out. A function of m alone, so it is fixed before any score is seen."""
    pairs = []
    for f in ONE_RUN_GUESS_FRACTIONS:
        k = max(1, int(round(f * m / 2)))
        if 2 * k <= m and (k, k) not in pairs:
            pairs.append((k, k))
    return pairs


def one_run_epsilon_lower_bound(scores, included, delta: float = 1e-5, confidence: float = 0.95,
                                k_plus: int | None = None, k_minus: int | None = None) -> dict:
    """ε lower bound from ONE training run with randomised canaries (Steinke, Nasr & Jagielski 2023).

    ``scores``: shape (m,), one per canary, higher = "more likely in"; they
    must come from the trained model and public information only.
    ``included``: shape (m,) bool, the secret membership draw (each canary in
    the training set independently with probability 1/2: :func:`draw_membership`).
    ``delta``: the δ of the (ε, δ)-DP hypothesis tested (per record).
    ``confidence``: 1 − β.

    Two variants:

    * ``k_plus`` and ``k_minus`` given: fixed in advance, one test at level β
      (Corollary 5.4 of the paper, as in :func:`one_run_p_value`).
    * not given (the default): every pair of :func:`one_run_guess_grid` (G
      pairs, a function of m only) is tested at level β/G and the largest
      bound is reported. By the union bound the probability that any of the G
      bounds exceeds the true ε is ≤ G·β/G = β, so the reported maximum holds
      at confidence 1 − β. (Picking the best pair and reporting it at level β,
      as the paper's experiments do, would not.)

    Returns a dict: ``epsilon_lower_bound`` (≥ 0), ``m``, ``r``, ``v``,
    ``k_plus``, ``k_minus`` of the pair reported, ``level`` (β or β/G), ``candidates``
    (every pair tried, with its v and bound), ``variant``, ``delta``, ``confidence``, ``method``.
    """
    scores = np.asarray(scores, float)
    included = np.asarray(included, bool)
    if scores.shape != included.shape or scores.ndim != 1:
        raise DpsdError(f"one-run audit: scores and included must be two vectors of one length, got shapes "
                        f"{scores.shape} and {included.shape}")
    m = len(scores)
    if (k_plus is None) != (k_minus is None):
        raise DpsdError("one-run audit: give both k_plus and k_minus, or neither (the pre-declared grid)")
    pairs = one_run_guess_grid(m) if k_plus is None else [(int(k_plus), int(k_minus))]
    beta = 1 - float(confidence)
    level = beta / len(pairs)
    candidates = []
    for kp, km in pairs:
        guess = one_run_guesses(scores, kp, km)
        v = int(((guess == 1) & included).sum() + ((guess == -1) & ~included).sum())
        eps = one_run_epsilon_from_counts(m, kp + km, v, delta, 1 - level)
        candidates.append({"k_plus": kp, "k_minus": km, "r": kp + km, "v": v, "epsilon_lower_bound": eps})
    best = max(candidates, key=lambda c: c["epsilon_lower_bound"])
    variant = ("(k+, k-) fixed in advance" if len(pairs) == 1 else
               f"best of {len(pairs)} (k+, k-) pairs declared in advance, each at level beta/{len(pairs)} (union bound)")
    return {**best, "m": m, "delta": float(delta), "confidence": float(confidence), "level": level,
            "n_included": int(included.sum()), "candidates": candidates, "variant": variant,
            "method": "one-run audit, Steinke, Nasr & Jagielski (NeurIPS 2023), Corollary 5.4"}


def draw_membership(m: int, seed: int | None = None) -> tuple:
    """The secret coin flips: (included, source). ``included``: (m,) bool, each True with probability 1/2.

    Drawn from a :class:`~dpsd_lite.noise.NoiseSource`: by default seeded with
    the operating system's entropy and stored nowhere, so that neither the
    auditor's scoring nor anyone holding the run's settings can know them.
    ``seed`` (lessons and tests only) makes the draw repeatable; then anyone
    with the seed knows the membership and the audit is a lesson, not evidence.
    ``source`` is the noise source's description for reports.
    """
    src = NoiseSource.secret() if seed is None else NoiseSource.from_seed(int(seed))
    included = torch.randint(0, 2, (int(m),), generator=src.generator("cpu")).bool()
    return included, src.describe()


@dataclass
class OneRunCanaries:
    """Canaries with secret, independently randomised membership, and the training copy they are planted in.

    ``data``: the copy to train on — every non-canary private record plus the
    included canaries (the left-out canaries are removed; held-out split
    unchanged). ``x`` (m×C×H×W) and ``y`` (m,): the canaries and the label
    each carries when included (a wrong label for ``kind="mislabeled"``, the
    true one for ``"natural"``). ``included`` (m,) bool: the secret draw.
    """

    data: DataSplits
    x: torch.Tensor
    y: torch.Tensor
    true_labels: torch.Tensor
    included: torch.Tensor
    private_index: torch.Tensor  # the canaries' positions in the original private split
    kind: str
    membership_source: dict

    def __len__(self):
        return len(self.y)


def _wrong_labels(y, num_classes, g):
    """A uniformly drawn wrong label for each label of ``y`` (canaries' planted labels), from ``g``."""
    shift = torch.randint(1, num_classes, (len(y),), generator=g)
    return (y + shift) % num_classes


def plant_one_run_canaries(data: DataSplits, num_canaries: int = 100, kind: str = "mislabeled", seed: int = 0,
                           membership_seed: int | None = None) -> OneRunCanaries:
    """Pick m private records as canaries and include each in a training copy with probability 1/2, secretly.

    Which records are canaries and their planted labels come from ``seed``
    (public: the auditor knows its canaries). Membership comes from
    :func:`draw_membership` (secret unless ``membership_seed`` is given).
    ``kind="mislabeled"`` gives each canary a uniformly drawn wrong label
    (what a model that memorises records repeats: the strongest black-box
    signal); ``"natural"`` keeps the true labels (the audit of ordinary records).
    """
    n = int(num_canaries)
    if kind not in ("mislabeled", "natural"):
        raise DpsdError(f"kind must be 'mislabeled' or 'natural', got {kind!r}")
    if not 2 <= n <= len(data.y_private):
        raise DpsdError(f"num_canaries must be between 2 and {len(data.y_private)}, got {num_canaries}")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(data.y_private), generator=g)[:n].sort().values
    true = data.y_private[idx].clone()
    planted = _wrong_labels(true, data.num_classes, g) if kind == "mislabeled" else true.clone()
    included, source = draw_membership(n, membership_seed)
    keep = torch.ones(len(data.y_private), dtype=torch.bool)
    keep[idx[~included]] = False
    y_priv = data.y_private.clone()
    y_priv[idx] = planted
    copy = dataclasses.replace(data, name=f"{data.name}+onerun{n}{kind[0]}s{seed}",  # the cache key adds a digest
                               x_private=data.x_private[keep], y_private=y_priv[keep])
    return OneRunCanaries(copy, data.x_private[idx].clone(), planted, true, included, idx, kind, source)


def one_run_exposure(model, canaries: OneRunCanaries, target: str = "model", claimed: dict | None = None) -> dict:
    """How often ``model`` outputs each canary's planted label: included canaries vs the left-out ones.

    The same row as :func:`canary_exposure` (``canary_*``: included, ``control_*``:
    left out, never trained on), with a one-sided Fisher exact p-value.
    """
    pred = _logits(model, canaries.x).argmax(1)
    hit = pred == canaries.y
    inc = canaries.included
    hits, ctrl = int(hit[inc].sum()), int(hit[~inc].sum())
    n, n_ctrl = int(inc.sum()), int((~inc).sum())
    p = float(fisher_exact([[hits, n - hits], [ctrl, n_ctrl - ctrl]], alternative="greater")[1])
    return {"target": target, "n": n, "n_control": n_ctrl, "canary_hits": hits, "canary_rate": hits / max(n, 1),
            "canary_ci": clopper_pearson(hits, n), "control_hits": ctrl, "control_rate": ctrl / max(n_ctrl, 1),
            "control_ci": clopper_pearson(ctrl, n_ctrl), "p_value": p,
            "canary_true_label_rate": float((pred == canaries.true_labels).float().mean()),
            "claimed": dict(claimed or NO_RECORD_CLAIM), "controls": "canaries left out by the coin flip"}


def one_run_attack(model, canaries: OneRunCanaries, target: str = "model", claimed: dict | None = None,
                   delta: float = 1e-5, confidence: float = 0.95, k_plus: int | None = None,
                   k_minus: int | None = None, n_boot: int = 200, seed: int = 0) -> AttackResult:
    """Score every canary by −loss on its planted label and bound ε with :func:`one_run_epsilon_lower_bound`.

    The result's ``metrics["eps_lb"]`` is the bound; AUC and TPR figures are
    over the canaries (included vs left out) and, like every AUC, descriptive.
    """
    scores = loss_scores(model, canaries.x, canaries.y)
    inc = canaries.included.numpy()
    metrics = attack_metrics(scores[inc], scores[~inc], n_boot, confidence, seed, delta, pooled=False)
    metrics["eps_lb"] = one_run_epsilon_lower_bound(scores, inc, delta, confidence, k_plus, k_minus)
    metrics["eps_lb"]["canary_kind"] = canaries.kind
    metrics["eps_lb"]["membership_source"] = canaries.membership_source
    return AttackResult("one-run", target, scores[inc], scores[~inc], metrics, dict(claimed or NO_RECORD_CLAIM))


def one_run_audit(train, data: DataSplits, num_canaries: int = 100, kind: str = "mislabeled", target: str = "model",
                  claimed: dict | None = None, delta: float = 1e-5, confidence: float = 0.95,
                  k_plus: int | None = None, k_minus: int | None = None, seed: int = 0,
                  membership_seed: int | None = None, n_boot: int = 200) -> tuple:
    """Plant canaries with secret membership, train ONE model with ``train(copy) -> model``, score, bound ε.

    ``train`` receives the :class:`~dpsd_lite.data.DataSplits` copy
    (:func:`plant_one_run_canaries`) and must return the released model (a
    ``torch.nn.Module`` giving class logits). Whatever ``train`` does with the
    copy is the algorithm audited. Returns ``(result, canaries, model)``:
    the :class:`AttackResult` (``result.epsilon_lower_bound``), the canaries
    (their secret ``included`` bits: look at them only after scoring) and the model.
    """
    canaries = plant_one_run_canaries(data, num_canaries, kind, seed, membership_seed)
    model = train(canaries.data)
    result = one_run_attack(model, canaries, target, claimed, delta, confidence, k_plus, k_minus, n_boot, seed)
    return result, canaries, model
