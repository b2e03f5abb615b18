"""The empirical privacy audit: membership inference and planted canaries.

An audit runs attacks against a released model and measures how well they do.
It gives a **lower bound** on leakage: a successful attack proves the model
leaks, a failed one proves nothing (a better attack might succeed). Only the
accounting of a mechanism (:mod:`dpsd_lite.accounting`, Opacus) can give an
upper bound, and only for the unit it names. And an audit's number is a
*bound* only under its framework's assumptions; this module says, for every
figure it prints, which framework (if any) makes it one.

The one-run audit: a valid ε lower bound
----------------------------------------
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

Membership inference on a fixed split: descriptive figures, not bounds
----------------------------------------------------------------------
Members are the teacher's private training records, non-members the held-out
records. That split was drawn once (stratified, fixed seed) and was not
randomised for the audit, and all members share ONE trained model: the
records are not independent trials of one membership test. The figures below
describe how well an attack separates the two sets on this model; none of
them is a lower bound on any ε.

* **Loss threshold** (Yeom et al. 2018): score = −cross-entropy of the
  model on the record; members tend to have lower loss.
* **Offline LiRA** (Carlini et al. 2022), laptop-sized: small shadow models
  (the :class:`~dpsd_lite.models.Student` architecture) are trained on random
  halves of the held-out pool, in complementary pairs, so each held-out
  record is *out* for exactly one shadow of each pair. Every record, member
  or not, is scored with exactly S/2 shadows for which it was out (a private
  record, out for all S, is scored with one shadow of each pair, drawn at
  random): members and non-members get equally precise references. The
  shadows' logit-scaled confidences φ = log p_y − log(1 − p_y) give a
  per-record mean μ_out; with so few shadows one pooled standard deviation
  σ_out is used (LiRA's fixed-variance variant). The score is
  (φ_target − μ_out)/σ_out.

Figures: ROC AUC with a bootstrap confidence interval, TPR at 1% and 0.1% FPR
with bootstrap intervals (with n non-members an FPR below 1/n cannot be
resolved: the output says so), and a **pooled ε statistic**
(:func:`pooled_epsilon_statistic`): the ε that Clopper–Pearson bounds on TPR
and FPR would imply if every record were an independent trial of one
membership test. Here they are not, so it is a descriptive statistic and is
printed as one.

Canaries
--------
:func:`plant_canaries` relabels a few private records with a wrong label in a
copy of the data (all of them trained on); :func:`canary_exposure` counts how
often a model outputs the canary label on the canary images, against control
images (held-out images of the same kind, given wrong labels by the same rule,
never trained on). :func:`privacy_study` uses one-run canaries instead, where
the controls are the canaries the coin flip left out.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import bdtrc, expit, gammaln, xlog1py, xlogy
from scipy.stats import beta, fisher_exact

from .data import DataSplits
from .errors import DpsdError
from .models import Student
from .noise import NoiseSource
from .utils import channels_last, flush_denormals

__all__ = [
    "FPR_LEVELS",
    "loss_scores",
    "logit_confidence",
    "ShadowModels",
    "train_shadow_models",
    "train_classifier",
    "AttackResult",
    "loss_attack",
    "lira_attack",
    "attack_metrics",
    "clopper_pearson",
    "pooled_epsilon_statistic",
    "ONE_RUN_GUESS_FRACTIONS",
    "one_run_p_value",
    "one_run_epsilon_from_counts",
    "one_run_guesses",
    "one_run_guess_grid",
    "one_run_epsilon_lower_bound",
    "draw_membership",
    "OneRunCanaries",
    "plant_one_run_canaries",
    "one_run_attack",
    "one_run_exposure",
    "one_run_audit",
    "lira_out_mask",
    "membership_sets",
    "audit_model",
    "format_audit",
    "CanarySet",
    "plant_canaries",
    "canary_exposure",
    "format_canaries",
    "claim",
    "NO_RECORD_CLAIM",
    "NO_PRIVACY_CLAIM",
    "claimed_from_privacy",
    "audit_run",
    "plot_roc",
    "plot_privacy_utility",
    "StudySettings",
    "Study",
    "privacy_study",
    "format_study",
]

FPR_LEVELS = (0.01, 0.001)


def claim(epsilon=math.inf, delta=None, unit="record") -> dict:
    """A claimed guarantee to print beside the attack: ε, δ and the unit it protects."""
    return {"epsilon": float(epsilon), "delta": delta, "unit": unit}


#: For models with no record-level guarantee (per-query modes' students, unless told more).
NO_RECORD_CLAIM = claim(math.inf, None, "none at the record level")
#: For the teacher: trained on the private split with no DP mechanism at all.
NO_PRIVACY_CLAIM = claim(math.inf, None, "none (no DP mechanism)")


# ---------------------------------------------------------------------------- scores

@torch.no_grad()
def _logits(model, x, batch_size=128) -> torch.Tensor:
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def loss_scores(model, x, y) -> np.ndarray:
    """Per-record −cross-entropy (higher = more member-like), shape (N,)."""
    return (-F.cross_entropy(_logits(model, x), y, reduction="none")).numpy()


def logit_confidence(model, x, y) -> np.ndarray:
    """LiRA's logit-scaled confidence φ = log p_y − log(1 − p_y), computed stably from logits, shape (N,)."""
    z = _logits(model, x).double()
    zy = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    return (zy - torch.logsumexp(others, dim=1)).numpy()


# ---------------------------------------------------------------------------- shadow models

def train_classifier(model, x, y, epochs=30, batch_size=32, lr=2e-3, seed=0):
    """Plain (non-private) minibatch Adam on (x, y): used for shadow models and test fixtures.

    The model is switched to channels-last in place (the CPU fast path, see :func:`~dpsd_lite.utils.channels_last`).
    """
    g = torch.Generator().manual_seed(int(seed))
    dev = next(model.parameters()).device
    channels_last(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = len(y)
    with flush_denormals():
        for _ in range(int(epochs)):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                loss = F.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


@dataclass
class ShadowModels:
    """Shadow models and which records of their pool each was trained on (``in_mask``: S×N bool)."""

    models: list
    in_mask: torch.Tensor
    epochs: int

    def __len__(self):
        return len(self.models)


def train_shadow_models(x_pool, y_pool, num_shadows=8, epochs=30, seed=0, image_shape=None,
                        num_classes=None) -> ShadowModels:
    """Train ``num_shadows`` small :class:`Student` models on random halves of a public pool.

    Shadows come in complementary pairs (one half, then the other), so every
    pool record is *out* for exactly half of them. The pool here is the
    held-out split: the attacker's data, never the private split.
    """
    num_shadows = int(num_shadows)
    if num_shadows < 2 or num_shadows % 2:
        raise DpsdError(f"num_shadows must be an even number >= 2 (complementary pairs), got {num_shadows}")
    n = len(y_pool)
    image_shape = image_shape or tuple(x_pool.shape[1:])
    num_classes = num_classes or int(y_pool.max()) + 1
    g = torch.Generator().manual_seed(int(seed))
    models, masks = [], []
    for pair in range(num_shadows // 2):
        half = torch.zeros(n, dtype=torch.bool)
        half[torch.randperm(n, generator=g)[: n // 2]] = True
        for j, mask in enumerate((half, ~half)):
            with torch.random.fork_rng():  # seeded initialisation without touching the caller's RNG
                torch.manual_seed(int(seed) * 1000 + 2 * pair + j)
                m = Student(image_shape, num_classes)
            train_classifier(m, x_pool[mask], y_pool[mask], epochs=epochs, seed=seed + 2 * pair + j)
            models.append(m)
            masks.append(mask)
    return ShadowModels(models, torch.stack(masks), int(epochs))


# ---------------------------------------------------------------------------- metrics

def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple:
    """Two-sided exact binomial interval (lo, hi) for k successes in n trials."""
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def _cp_one_sided(k, n, alpha, upper):
    if upper:
        return 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def _auc(s_in, s_out) -> float:
    """Mann–Whitney AUC (ties count one half): P(score of a member > score of a non-member)."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([s_in, s_out]))
    n1, n0 = len(s_in), len(s_out)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _tpr_at_fpr(s_in, s_out, fpr):
    """Largest TPR over thresholds whose FPR ≤ ``fpr`` (strict ">" decisions)."""
    allowed = int(math.floor(fpr * len(s_out) + 1e-9))
    srt = np.sort(s_out)[::-1]
    thr = srt[allowed] if allowed < len(srt) else -np.inf
    return float(np.mean(s_in > thr))


def _eps_from_counts(tp, n_in, fp, n_out, delta, alpha):
    """The ε one threshold's counts imply (Kairouz et al. 2015), each rate bounded one-sidedly at level α/2."""
    tpr_lo = _cp_one_sided(tp, n_in, alpha / 2, upper=False)
    fpr_hi = _cp_one_sided(fp, n_out, alpha / 2, upper=True)
    best = 0.0
    if tpr_lo - delta > 0 and fpr_hi > 0:
        best = max(best, math.log((tpr_lo - delta) / fpr_hi))
    if 1 - fpr_hi - delta > 0 and 1 - tpr_lo > 0:
        best = max(best, math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))
    return best, tpr_lo, fpr_hi


def pooled_epsilon_statistic(s_in, s_out, delta=1e-5, confidence=0.95, seed=0) -> dict:
    """A descriptive statistic, NOT a lower bound: the ε that one threshold's TPR and FPR would imply.

    The records are split at random in two halves: a threshold is chosen on
    the first (the one with the largest value there), and on the second
    one-sided Clopper–Pearson bounds (each at level (1 − confidence)/2) on
    TPR and FPR are turned into max(ln((TPR_lo − δ)/FPR_hi),
    ln((1 − FPR_hi − δ)/(1 − TPR_lo)), 0) (Kairouz et al. 2015).

    That would be a lower bound on ε if each record were an independent trial
    of ONE membership test, each record's membership decided at random for
    the audit. Scores of many records of one trained model, members and
    non-members fixed by one split, are neither, so the value only
    *describes* how separable the two sets are. For a bound, randomise
    membership per canary and use :func:`one_run_epsilon_lower_bound`.
    """
    s_in, s_out = np.asarray(s_in, float), np.asarray(s_out, float)
    rng = np.random.default_rng(seed)
    pin, pout = rng.permutation(len(s_in)), rng.permutation(len(s_out))
    sel_in, ev_in = s_in[pin[: len(pin) // 2]], s_in[pin[len(pin) // 2:]]
    sel_out, ev_out = s_out[pout[: len(pout) // 2]], s_out[pout[len(pout) // 2:]]
    alpha = 1 - confidence
    best = (-1.0, np.inf)
    for t in np.unique(np.concatenate([sel_in, sel_out])):
        e, _, _ = _eps_from_counts(int((sel_in >= t).sum()), len(sel_in), int((sel_out >= t).sum()),
                                   len(sel_out), delta, alpha)
        if e > best[0]:
            best = (e, t)
    t = best[1]
    tp, fp = int((ev_in >= t).sum()), int((ev_out >= t).sum())
    eps, tpr_lo, fpr_hi = _eps_from_counts(tp, len(ev_in), fp, len(ev_out), delta, alpha)
    return {"epsilon": eps, "is_lower_bound": False, "delta": delta, "confidence": confidence, "threshold": float(t),
            "tp": tp, "n_members": len(ev_in), "fp": fp, "n_nonmembers": len(ev_out),
            "tpr_lower": tpr_lo, "fpr_upper": fpr_hi,
            "method": "descriptive: Clopper-Pearson bounds on TPR and FPR at a threshold chosen on a disjoint half, "
                      "pooling records of one model (not independent trials, membership not randomised)"}


def attack_metrics(s_in, s_out, n_boot=200, confidence=0.95, seed=0, delta=1e-5, pooled=True) -> dict:
    """AUC and TPR at each of ``FPR_LEVELS`` with bootstrap percentile intervals, the ROC curve and,
    with ``pooled``, the descriptive :func:`pooled_epsilon_statistic` (key ``eps_pooled``)."""
    from sklearn.metrics import roc_curve

    s_in, s_out = np.asarray(s_in, float), np.asarray(s_out, float)
    rng = np.random.default_rng(seed)
    boots = {"auc": [], **{f: [] for f in FPR_LEVELS}}
    for _ in range(int(n_boot)):
        bi = s_in[rng.integers(0, len(s_in), len(s_in))]
        bo = s_out[rng.integers(0, len(s_out), len(s_out))]
        boots["auc"].append(_auc(bi, bo))
        for f in FPR_LEVELS:
            boots[f].append(_tpr_at_fpr(bi, bo, f))
    q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
    ci = lambda v: tuple(float(x) for x in np.percentile(v, q)) if len(v) else (math.nan, math.nan)
    labels = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    fpr, tpr, _ = roc_curve(labels, np.r_[s_in, s_out])
    out = {
        "auc": _auc(s_in, s_out), "auc_ci": ci(boots["auc"]),
        "tpr_at_fpr": {f: {"tpr": _tpr_at_fpr(s_in, s_out, f), "ci": ci(boots[f]),
                           "resolvable": f * len(s_out) >= 1} for f in FPR_LEVELS},
        "roc": {"fpr": fpr, "tpr": tpr},
        "n_members": len(s_in), "n_nonmembers": len(s_out), "confidence": confidence, "n_boot": int(n_boot),
    }
    if pooled:
        out["eps_pooled"] = pooled_epsilon_statistic(s_in, s_out, delta=delta, confidence=confidence, seed=seed)
    return out


@dataclass
class AttackResult:
    """One attack on one model: scores, metrics and the claim it is compared with.

    ``metrics["eps_lb"]`` (a valid ε lower bound) exists only for the one-run
    attack (:func:`one_run_attack`); the fixed-split attacks carry the
    descriptive ``metrics["eps_pooled"]`` instead.
    """

    attack: str
    target: str
    scores_members: np.ndarray
    scores_nonmembers: np.ndarray
    metrics: dict
    claimed: dict = field(default_factory=lambda: dict(NO_RECORD_CLAIM))

    @property
    def auc(self) -> float:
        return self.metrics["auc"]

    @property
    def auc_ci(self) -> tuple:
        return self.metrics["auc_ci"]

    @property
    def epsilon_lower_bound(self) -> float | None:
        """The one-run ε lower bound; None for attacks on a fixed split (no valid bound exists there)."""
        lb = self.metrics.get("eps_lb")
        return None if lb is None else lb["epsilon_lower_bound"]

    @property
    def pooled_epsilon(self) -> float | None:
        """The descriptive :func:`pooled_epsilon_statistic` (None for the one-run attack). Not a bound."""
        st = self.metrics.get("eps_pooled")
        return None if st is None else st["epsilon"]

    def tpr_at(self, fpr: float) -> float:
        return self.metrics["tpr_at_fpr"][fpr]["tpr"]

    def summary(self) -> dict:
        m = self.metrics
        row = {"target": self.target, "attack": self.attack, "auc": m["auc"],
               "auc_lo": m["auc_ci"][0], "auc_hi": m["auc_ci"][1]}
        for f in FPR_LEVELS:
            t = m["tpr_at_fpr"][f]
            row[f"tpr@{f:g}"] = t["tpr"]
            row[f"tpr@{f:g}_lo"], row[f"tpr@{f:g}_hi"] = t["ci"]
        row["eps_lower_bound"] = self.epsilon_lower_bound
        row["eps_lb_confidence"] = m["eps_lb"]["confidence"] if "eps_lb" in m else None
        row["eps_pooled_descriptive"] = self.pooled_epsilon
        row["claimed_epsilon"] = self.claimed["epsilon"]
        row["claimed_delta"] = self.claimed["delta"]
        row["claimed_unit"] = self.claimed["unit"]
        row["n_members"], row["n_nonmembers"] = m["n_members"], m["n_nonmembers"]
        return row


def loss_attack(model, x_in, y_in, x_out, y_out, target="model", claimed=None, n_boot=200, seed=0,
                delta=1e-5) -> AttackResult:
    """Loss-threshold membership inference: score = −loss of ``model`` on each record."""
    s_in, s_out = loss_scores(model, x_in, y_in), loss_scores(model, x_out, y_out)
    return AttackResult("loss", target, s_in, s_out, attack_metrics(s_in, s_out, n_boot, seed=seed, delta=delta),
                        dict(claimed or NO_RECORD_CLAIM))


def lira_out_mask(shadows: ShadowModels, n_members: int, seed: int = 0) -> torch.Tensor:
    """Which shadows score which record: (S, n_members + N_pool) bool, exactly S/2 True in every column.

    Columns: the members first (records no shadow was trained on), then the
    shadows' pool. Shadows come in complementary pairs (models 2j and 2j+1),
    so a pool record is out for exactly one shadow of each pair: that one
    scores it. A member is out for both; one of the two, drawn at random per
    record and pair (generator seeded with ``seed``: a public choice that
    never looks at the target model), scores it. So members and non-members
    are both compared with S/2 models that never saw them: neither side gets a
    more precise reference (LiRA needs equal counts on both sides).
    """
    s, n_pool = shadows.in_mask.shape
    if s % 2 or not torch.equal(shadows.in_mask[0::2], ~shadows.in_mask[1::2]):
        raise DpsdError("LiRA: shadow models must come in complementary pairs (models 2j and 2j+1 trained on "
                        "complementary halves of the pool), as train_shadow_models makes them")
    g = torch.Generator().manual_seed(int(seed))
    first = torch.randint(0, 2, (s // 2, int(n_members)), generator=g).bool()  # True: shadow 2j scores the member
    members = torch.empty(s, int(n_members), dtype=torch.bool)
    members[0::2], members[1::2] = first, ~first
    return torch.cat([members, ~shadows.in_mask], 1)


def lira_attack(model, shadows: ShadowModels, x_in, y_in, x_out, y_out, target="model", claimed=None,
                n_boot=200, seed=0, delta=1e-5) -> AttackResult:
    """Offline LiRA (fixed variance). ``x_out`` must be the shadows' pool (``shadows.in_mask`` columns).

    Every record is scored with exactly S/2 shadows for which it was out
    (:func:`lira_out_mask`), members and non-members alike.
    """
    if shadows.in_mask.shape[1] != len(y_out):
        raise DpsdError("LiRA: the non-members must be exactly the shadow models' pool")
    x = torch.cat([x_in, x_out])
    y = torch.cat([y_in, y_out])
    out = lira_out_mask(shadows, len(y_in), seed).numpy()  # S×N, S/2 per column
    phi = np.stack([logit_confidence(m, x, y) for m in shadows.models])  # S×N
    n_out = out.sum(0)
    mu = (phi * out).sum(0) / n_out
    resid = (phi - mu)[out]
    sigma = max(float(resid.std()), 1e-6)
    score = (logit_confidence(model, x, y) - mu) / sigma
    s_in, s_out = score[: len(y_in)], score[len(y_in):]
    metrics = attack_metrics(s_in, s_out, n_boot, seed=seed, delta=delta)
    metrics["shadows_per_record"] = int(n_out[0])
    return AttackResult("lira-offline", target, s_in, s_out, metrics, dict(claimed or NO_RECORD_CLAIM))


# ---------------------------------------------------------------------------- the one-run audit (a valid bound)

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


# ---------------------------------------------------------------------------- the audit

def membership_sets(data: DataSplits, n_members: int | None = None, seed: int = 0):
    """(x_in, y_in, x_out, y_out): a random subset of private records (as many as held-out ones) and the held-out split."""
    n = len(data.y_heldout) if n_members is None else int(n_members)
    n = min(n, len(data.y_private))
    idx = torch.randperm(len(data.y_private), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data.x_private[idx], data.y_private[idx], data.x_heldout, data.y_heldout


def audit_model(model, data: DataSplits, target: str = "model", claimed: dict | None = None,
                shadows: ShadowModels | None = None, n_boot: int = 200, seed: int = 0,
                delta: float = 1e-5, n_members: int | None = None, canaries: OneRunCanaries | None = None,
                confidence: float = 0.95, k_plus: int | None = None, k_minus: int | None = None) -> list:
    """The attacks on ``model``: loss (and LiRA) on the fixed split, and the one-run audit if canaries are given.

    Fixed split: the teacher's private records (members) vs held-out records;
    pass ``shadows`` (from :func:`train_shadow_models` on the held-out split)
    to reuse them across targets, without them only the loss attack runs.
    These results are descriptive (no ε lower bound).

    ``canaries`` (:func:`plant_one_run_canaries`, and ``model`` trained on
    ``canaries.data``) add the one-run attack, whose ``epsilon_lower_bound``
    is a valid bound at ``confidence`` for an (ε, ``delta``)-DP claim per record.
    Returns a list of :class:`AttackResult`.
    """
    x_in, y_in, x_out, y_out = membership_sets(data, n_members, seed)
    results = [loss_attack(model, x_in, y_in, x_out, y_out, target, claimed, n_boot, seed, delta)]
    if shadows is not None:
        results.append(lira_attack(model, shadows, x_in, y_in, x_out, y_out, target, claimed, n_boot, seed, delta))
    if canaries is not None:
        results.append(one_run_attack(model, canaries, target, claimed, delta, confidence, k_plus, k_minus,
                                      n_boot, seed))
    return results


def _claim_text(c: dict) -> str:
    if c["epsilon"] == math.inf or c["delta"] is None:
        return f"claimed: {c['unit']}"
    return f"claimed: eps={c['epsilon']:.3g}, delta={c['delta']:g}, per {c['unit']}"


def format_audit(results) -> str:
    """A plain-text table of attack results, each beside its claim (ε, δ, unit), and what each figure means."""
    head = (f"{'target':<26} {'attack':<13} {'AUC [95% CI]':<22} {'TPR@1%FPR [CI]':<22} "
            f"{'TPR@0.1%FPR [CI]':<22} {'pooled eps†':<12} {'eps LB‡':<8} claim")
    lines = [head, "-" * len(head)]
    for r in results:
        s = r.summary()
        t1, t2 = r.metrics["tpr_at_fpr"][0.01], r.metrics["tpr_at_fpr"][0.001]
        note = "" if t2["resolvable"] else "*"
        pooled = "—" if s["eps_pooled_descriptive"] is None else f"{s['eps_pooled_descriptive']:.3f}"
        lb = "—" if s["eps_lower_bound"] is None else f"{s['eps_lower_bound']:.3f}"
        lines.append(
            f"{r.target:<26} {r.attack:<13} {s['auc']:.3f} [{s['auc_lo']:.3f}, {s['auc_hi']:.3f}]   "
            f"{t1['tpr']:.3f} [{t1['ci'][0]:.3f}, {t1['ci'][1]:.3f}]   "
            f"{t2['tpr']:.3f} [{t2['ci'][0]:.3f}, {t2['ci'][1]:.3f}]{note:<2} "
            f"{pooled:<12} {lb:<8} {_claim_text(r.claimed)}")
    if any(not r.metrics["tpr_at_fpr"][0.001]["resolvable"] for r in results):
        lines.append("* fewer than 1,000 non-members: an FPR of 0.1% cannot be resolved; this is TPR at FPR = 0 observed")
    if any(r.pooled_epsilon is not None for r in results):
        lines.append("loss / lira-offline: members = private training records, non-members = held-out records, fixed by "
                     "one split and scored on one model. † pooled eps: the eps that Clopper-Pearson bounds on TPR and "
                     "FPR would imply if the records were independent trials of one membership test; they are not, so "
                     "it is a descriptive statistic, NOT a lower bound on any eps.")
    one_run = [r for r in results if r.epsilon_lower_bound is not None]
    if one_run:
        lb = one_run[0].metrics["eps_lb"]
        seeded = lb.get("membership_source", {}).get("reproducible_noise", False)
        flip = ("SEEDED coin flip (a lesson: whoever holds the seed knows the membership)" if seeded
                else "secret coin flip")
        lines.append(f"‡ one-run: {lb['m']} canaries ({lb.get('canary_kind', 'planted')}), each in the training set "
                     f"with probability 1/2 by a {flip}, one model trained (Steinke, Nasr & Jagielski 2023, "
                     f"Cor. 5.4; {lb['variant']}). Under these assumptions, with {lb['confidence']:.0%} confidence any "
                     f"training algorithm that is (eps, delta={lb['delta']:g})-DP per record must satisfy "
                     "eps >= eps LB. Comparable only with a record-level claim.")
    else:
        lines.append("‡ no eps lower bound: none of these attacks randomised membership. A valid bound needs canaries "
                     "with secret random membership (one_run_audit / privacy_study).")
    lines.append("An audit is a lower bound on leakage, never a proof of privacy.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- canaries

@dataclass
class CanarySet:
    """A copy of the data with mislabeled canaries planted in the private split, and matched controls."""

    data: DataSplits
    canary_index: torch.Tensor  # positions in data.x_private
    canary_labels: torch.Tensor  # the wrong labels planted
    true_labels: torch.Tensor
    control_x: torch.Tensor  # held-out images, never trained on
    control_labels: torch.Tensor  # wrong labels drawn by the same rule
    control_true: torch.Tensor

    @property
    def canary_x(self) -> torch.Tensor:
        return self.data.x_private[self.canary_index]

    def __len__(self):
        return len(self.canary_index)


def _wrong_labels(y, num_classes, g):
    shift = torch.randint(1, num_classes, (len(y),), generator=g)
    return (y + shift) % num_classes


def plant_canaries(data: DataSplits, num_canaries: int = 20, seed: int = 0) -> CanarySet:
    """Relabel ``num_canaries`` random private records with a uniformly drawn wrong label (in a copy).

    ``num_canaries`` held-out images get wrong labels by the same rule as
    controls. The copy is renamed (``<name>+canaries<n>s<seed>``) so that the
    teacher cache never confuses it with the clean data.
    """
    n = int(num_canaries)
    if not 1 <= n <= min(len(data.y_private), len(data.y_heldout)):
        raise DpsdError(f"num_canaries must be between 1 and {min(len(data.y_private), len(data.y_heldout))}, got {num_canaries}")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(data.y_private), generator=g)[:n].sort().values
    true = data.y_private[idx].clone()
    wrong = _wrong_labels(true, data.num_classes, g)
    y_priv = data.y_private.clone()
    y_priv[idx] = wrong
    planted = dataclasses.replace(data, name=f"{data.name}+canaries{n}s{seed}", y_private=y_priv)
    cidx = torch.randperm(len(data.y_heldout), generator=g)[:n]
    ctrue = data.y_heldout[cidx].clone()
    return CanarySet(planted, idx, wrong, true, data.x_heldout[cidx].clone(),
                     _wrong_labels(ctrue, data.num_classes, g), ctrue)


def canary_exposure(model, canaries: CanarySet, target: str = "model", claimed: dict | None = None) -> dict:
    """How often ``model`` outputs the planted label on canaries vs the assigned label on controls.

    Returns counts, rates with Clopper–Pearson 95% intervals and a one-sided
    Fisher exact p-value (canary rate > control rate).
    """
    pc = _logits(model, canaries.canary_x).argmax(1)
    po = _logits(model, canaries.control_x).argmax(1)
    hits = int((pc == canaries.canary_labels).sum())
    ctrl = int((po == canaries.control_labels).sum())
    n = len(canaries)
    p = float(fisher_exact([[hits, n - hits], [ctrl, n - ctrl]], alternative="greater")[1])
    return {"target": target, "n": n, "canary_hits": hits, "canary_rate": hits / n,
            "canary_ci": clopper_pearson(hits, n), "control_hits": ctrl, "control_rate": ctrl / n,
            "control_ci": clopper_pearson(ctrl, n), "p_value": p,
            "canary_true_label_rate": float((pc == canaries.true_labels).float().mean()),
            "claimed": dict(claimed or NO_RECORD_CLAIM)}


def format_canaries(rows) -> str:
    """Plain-text table of :func:`canary_exposure` or :func:`one_run_exposure` rows."""
    head = f"{'target':<26} {'canary label on canaries':<28} {'on controls':<24} {'p (Fisher)':<11} claim"
    lines = [head, "-" * len(head)]
    for r in rows:
        n_ctrl = r.get("n_control", r["n"])
        lines.append(f"{r['target']:<26} {r['canary_hits']:>3}/{r['n']:<3} = {r['canary_rate']:.2f} "
                     f"[{r['canary_ci'][0]:.2f}, {r['canary_ci'][1]:.2f}]   "
                     f"{r['control_hits']:>3}/{n_ctrl:<3} = {r['control_rate']:.2f} "
                     f"[{r['control_ci'][0]:.2f}, {r['control_ci'][1]:.2f}]  {r['p_value']:<11.3g} {_claim_text(r['claimed'])}")
    if rows and "controls" in rows[0]:
        lines.append(f"canaries: included in training by the coin flip; controls: {rows[0]['controls']} (never trained on).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- claims of released models

def claimed_from_privacy(privacy: dict) -> dict:
    """The record-level claim a privacy report makes (ε, δ, unit), for printing beside an attack.

    Per-query reports (``label``, ``rr``, ``data``) make no record-level claim:
    the returned unit says so and quotes their per-answer ε.
    """
    unit = str(privacy.get("unit_of_privacy", ""))
    eps, delta = privacy.get("epsilon"), privacy.get("delta")
    if privacy.get("record_level"):  # transcribed from a DP-SGD teacher: its record-level claim holds
        return claim(privacy["record_level"]["epsilon"], privacy["record_level"]["delta"], "record")
    if not privacy.get("private"):
        return claim(math.inf, None, "none (mode none: no DP mechanism)")
    if privacy.get("unit") == "record" or unit.startswith("each private training record"):  # DP-SGD, ensemble
        return claim(eps, delta, "record")
    return claim(math.inf, None, f"none at the record level (eps={eps:g}, delta={delta:g} per teacher answer)")


def audit_run(run, data=None, teacher=None, cache_dir=None, num_shadows=8, shadow_epochs=30, n_boot=200,
              seed=0, device="cpu") -> list:
    """Audit a saved run (a path or a :class:`~dpsd_lite.runs.LoadedRun`): its teacher and its student.

    The teacher is the cached one the run was made with (trained again if the
    cache is gone: same data, epochs and seed). Shadow models are trained on
    the held-out split. Returns the :class:`AttackResult` list (teacher first).
    """
    from .data import load_dataset
    from .runs import load_run
    from .teacher import teacher_for

    if not hasattr(run, "student"):
        run = load_run(run, device=device)
    cfg = run.config
    if data is None:
        data = load_dataset(cfg.dataset, root=cfg.data_root, download=False)
    if teacher is None:
        teacher = teacher_for(cfg, data, device=device, cache_dir=cache_dir)
    shadows = train_shadow_models(data.x_heldout, data.y_heldout, num_shadows, shadow_epochs, seed=seed) \
        if num_shadows else None
    teacher_claim = (claim(teacher.privacy["epsilon"], teacher.privacy["delta"], "record")
                     if getattr(teacher, "privacy", None) else NO_PRIVACY_CLAIM)  # a DP-SGD teacher claims its ε
    results = audit_model(teacher.model, data, "teacher", teacher_claim, shadows, n_boot, seed)
    results += audit_model(run.student, data, f"student ({cfg.noise_mode})", claimed_from_privacy(run.privacy),
                           shadows, n_boot, seed)
    return results


# ---------------------------------------------------------------------------- figures

def plot_roc(results, ax=None, title=None):
    """ROC curves of attack results on log–log axes (the low-FPR corner is what matters); returns the Figure."""
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(5.6, 4.6), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    floor = 1e-3
    for r in results:
        fpr, tpr = r.metrics["roc"]["fpr"], r.metrics["roc"]["tpr"]
        ax.plot(np.clip(fpr, floor, 1), np.clip(tpr, floor, 1), drawstyle="steps-post",
                label=f"{r.target}, {r.attack} (AUC {r.auc:.2f})")
    grid = np.logspace(-3, 0, 50)
    ax.plot(grid, grid, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.02)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("true positive rate (log)")
    ax.set_title(title or "membership inference: private records vs held-out records")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", loc="lower right")
    return fig


def plot_privacy_utility(rows, ax=None, title=None):
    """Held-out accuracy against ε, one line per mode (DP-SGD and the ensemble included); returns the Figure.

    Solid lines: ε per private training record (DP-SGD, ensemble). Dashed:
    ε per teacher answer (``label``, ``rr``, ``data``) — a different unit, so
    the x positions of the two kinds are not the same guarantee.
    """
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    for mode in dict.fromkeys(r["mode"] for r in rows if r["unit"] != "none" and r["model"] != "teacher"):
        pts = sorted((r["epsilon_target"], 100 * r["heldout_accuracy"]) for r in rows  # x: the target epsilon
                     if r["mode"] == mode and r["model"] != "teacher")
        record = any(r["unit"] == "record" for r in rows if r["mode"] == mode)
        ax.plot(*zip(*pts), marker="o", linestyle="-" if record else "--",
                label=f"{mode} ({'per record' if record else 'per teacher answer'})")
    for r in rows:
        if r["model"] == "teacher":
            ax.axhline(100 * r["heldout_accuracy"], color="black", linestyle=":", linewidth=1,
                       label=f"teacher, no privacy ({100 * r['heldout_accuracy']:.1f}%)")
    ax.set_xscale("log")
    ax.set_ylim(0, 102)
    ax.set_xlabel("ε (log scale; δ as reported; unit in the legend)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title or "privacy vs utility")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


# ---------------------------------------------------------------------------- the side-by-side study

@dataclass
class StudySettings:
    """Sizes of everything :func:`privacy_study` trains. The defaults are the mnist-5k benchmark's."""

    epsilons: tuple = (1.0, 10.0)
    modes: tuple = ("label", "rr")
    delta: float = 1e-5
    transcribe: dict = field(default_factory=dict)  # overrides of TranscribeConfig (steps, batch_size, ...)
    teacher_epochs: int = 8
    dpsgd: dict = field(default_factory=lambda: {"epochs": 30, "batch_size": 256, "lr": 4e-3})
    ensemble_teachers: int = 50
    ensemble_epochs: int | None = None
    ensemble_queries: int = 256
    ensemble_finetune_epochs: int = 30
    num_shadows: int = 8
    shadow_epochs: int = 30
    n_boot: int = 200
    # One-run audit: private records made canaries, each kept in the training copy with probability 1/2 by a
    # secret coin flip (0: none, and then no eps lower bound). More canaries allow a larger bound: a perfect
    # attack shows about 2.4 at 95% on 100 canaries, 3.1 on 200, 4.7 on 1000 (default guess grid, delta 1e-5).
    canaries: int = 100
    canary_kind: str = "mislabeled"  # or "natural" (true labels)
    membership_seed: int | None = None  # None: secret membership (the OS's entropy); a number: a lesson only
    confidence: float = 0.95
    seed: int = 0
    # record-level routes beside plain DP-SGD: DP-SGD from public initial weights (None: where the domain has
    # public drawings, i.e. digits), and a student transcribed (mode none, post-processing) from that DP model
    dpsgd_public: bool | None = None
    dp_teacher_student: bool = True


@dataclass
class Study:
    rows: list  # one per released model: accuracy, claim, audit figures
    attacks: list  # every AttackResult
    canaries: list  # one_run_exposure rows (included canaries vs those the coin flip left out)
    settings: StudySettings
    data_name: str


def privacy_study(data: DataSplits, settings: StudySettings | None = None, cache_dir=None, device="cpu",
                  log=print) -> Study:
    """Train and audit every model side by side: teacher, DPSD students per mode and ε, ensemble, DP-SGD.

    With ``settings.canaries > 0``, m private records become one-run
    canaries (:func:`plant_one_run_canaries`: mislabeled by default, each kept
    with probability 1/2 by a secret coin flip) and *every* model is trained
    on that one copy, so each model gets a valid one-run ε lower bound
    (:func:`one_run_attack`) beside its record-level claim. The descriptive
    fixed-split attacks (loss, LiRA) take their members from the non-canary
    private records, which every model was trained on.

    With a secret membership draw (the default) the copy's content is new at
    every call, so the teacher is trained again each time (its cache is keyed
    by a digest of the data).
    """
    from .dpsgd import train_dpsgd
    from .ensemble import train_teacher_ensemble, transcribe_with_ensemble
    from .teacher import get_teacher
    from .transcribe import transcribe

    s = settings or StudySettings()
    log = log or (lambda *a, **k: None)
    cs = plant_one_run_canaries(data, s.canaries, s.canary_kind, s.seed, s.membership_seed) if s.canaries else None
    train = cs.data if cs is not None else data
    clean = torch.ones(len(data.y_private), dtype=torch.bool)  # private records that are not canaries:
    if cs is not None:  # in every model's training set
        clean[cs.private_index] = False
        log(f"{len(cs)} {cs.kind} canaries, {int(cs.included.sum())} kept by the coin flip "
            f"({'secret' if not cs.membership_source['reproducible_noise'] else 'REPRODUCIBLE: a lesson only'})")
    members = DataSplits(train.name, data.x_private[clean], data.y_private[clean], train.x_heldout,
                         train.y_heldout, train.class_names)  # only for choosing fixed-split audit members
    log(f"teacher on {train.name} ({len(train.y_private)} private records)")
    teacher = get_teacher(train, epochs=s.teacher_epochs, seed=s.seed, device=device, cache_dir=cache_dir)
    log(f"{s.num_shadows} shadow models on halves of the {len(train.y_heldout)} held-out records")
    shadows = train_shadow_models(train.x_heldout, train.y_heldout, s.num_shadows, s.shadow_epochs, seed=s.seed) \
        if s.num_shadows else None
    rows, attacks, canary_rows = [], [], []

    def add(model_name, mode, eps_target, privacy_claim, model, accuracy_, seconds=None):
        res = audit_model(model, members, model_name, privacy_claim, shadows, s.n_boot, s.seed, s.delta,
                          canaries=cs, confidence=s.confidence)
        attacks.extend(res)
        row = {"model": model_name, "mode": mode, "epsilon_target": eps_target,
               "epsilon": privacy_claim["epsilon"] if privacy_claim["unit"] == "record" else eps_target,
               "delta": privacy_claim["delta"], "unit": "record" if privacy_claim["unit"] == "record" else
               ("teacher answer" if math.isfinite(eps_target) else "none"),
               "record_claim": privacy_claim, "heldout_accuracy": accuracy_, "seconds": seconds}
        row["eps_lower_bound"] = None  # only the one-run attack gives one
        for r in res:
            key = {"lira-offline": "lira", "loss": "loss", "one-run": "one_run"}[r.attack]
            row[f"{key}_auc"], row[f"{key}_auc_ci"] = r.auc, r.auc_ci
            row[f"{key}_tpr@0.01"] = r.tpr_at(0.01)
            if r.attack == "one-run":
                lb = r.metrics["eps_lb"]
                row["eps_lower_bound"] = lb["epsilon_lower_bound"]
                row["one_run"] = {k: lb[k] for k in ("m", "r", "v", "k_plus", "k_minus", "level", "confidence",
                                                     "delta", "variant")}
            else:
                row[f"{key}_eps_pooled"] = r.pooled_epsilon  # descriptive, not a bound
        if cs is not None:
            c = one_run_exposure(model, cs, model_name, privacy_claim)
            canary_rows.append(c)
            row["canary_rate"], row["control_rate"] = c["canary_rate"], c["control_rate"]
        rows.append(row)
        log(f"  {model_name}: held-out accuracy {accuracy_:.3f}, loss-attack AUC {row['loss_auc']:.3f}")

    add("teacher", "teacher", math.inf, NO_PRIVACY_CLAIM, teacher.model, teacher.heldout_accuracy)
    base = {"dataset": data.name, "device": device, "seed": s.seed, "teacher_epochs": s.teacher_epochs,
            **s.transcribe}
    for eps in s.epsilons:
        for mode in s.modes:
            log(f"DPSD student, mode {mode}, eps={eps:g} per teacher answer")
            res = transcribe(data=train, teacher=teacher, noise_mode=mode, epsilon=eps, delta=s.delta, **base)
            add(f"student {mode} eps={eps:g}", mode, eps, claimed_from_privacy(res.privacy), res.student,
                res.student_accuracy)
    if s.ensemble_teachers:
        log(f"teacher ensemble: {s.ensemble_teachers} teachers on disjoint partitions")
        ens = train_teacher_ensemble(train, s.ensemble_teachers, epochs=s.ensemble_epochs, seed=s.seed,
                                     device=device, cache_dir=cache_dir)
        log(f"  ensemble plurality vote (no noise) held-out accuracy {ens.heldout_accuracy:.3f}")
        for eps in s.epsilons:
            log(f"ensemble student, eps={eps:g} per private record, {s.ensemble_queries} queries")
            out = transcribe_with_ensemble(train, ens, eps, s.delta, query_budget=s.ensemble_queries,
                                           finetune_epochs=s.ensemble_finetune_epochs, **base)
            add(f"ensemble eps={eps:g}", "ensemble", eps, claimed_from_privacy(out.privacy), out.student,
                out.student_accuracy)
    if s.dpsgd is not None:
        for eps in s.epsilons:
            log(f"DP-SGD, eps={eps:g} per private record")
            t0 = time.perf_counter()
            d = train_dpsgd(train, eps, s.delta, seed=s.seed, device=device, **s.dpsgd)
            add(f"dpsgd eps={eps:g}", "dpsgd", eps, claim(d.epsilon, d.delta, "record"), d.model,
                d.heldout_accuracy, time.perf_counter() - t0)
        public = s.dpsgd_public if s.dpsgd_public is not None else data.name in _public_drawings()
        if public:
            _public_routes(s, data, train, base, device, add, log)
    return Study(rows, attacks, canary_rows, s, train.name)


def _public_drawings():
    from .generators import STROKE_FORMAT

    return STROKE_FORMAT


def _public_routes(s, data, train, base, device, add, log):
    """DP-SGD from weights trained on public drawings, and a student transcribed from that DP model (free)."""
    from .dpsgd import DP_TEACHER, train_dpsgd
    from .public_data import public_pretrained_student
    from .teacher import TrainedTeacher
    from .transcribe import transcribe

    t0 = time.perf_counter()
    init = public_pretrained_student(data.name, steps=DP_TEACHER["pretrain_steps"], seed=s.seed, device=device)
    pretrain_seconds = time.perf_counter() - t0
    log(f"public initialisation: {DP_TEACHER['pretrain_steps']} steps on digit drawings ({pretrain_seconds:.0f} s)")
    for eps in s.epsilons:
        log(f"DP-SGD from the public initialisation, eps={eps:g} per private record")
        t0 = time.perf_counter()
        d = train_dpsgd(train, eps, s.delta, seed=s.seed, device=device, init=init,
                        init_description="public digit drawings", **s.dpsgd)
        add(f"dpsgd-public eps={eps:g}", "dpsgd-public", eps, claim(d.epsilon, d.delta, "record"), d.model,
            d.heldout_accuracy, pretrain_seconds + time.perf_counter() - t0)
        if s.dp_teacher_student:
            log(f"student transcribed from that DP model (mode none: post-processing), eps={eps:g} per record")
            tt = TrainedTeacher(d.model, d.heldout_accuracy, d.private_accuracy, d.epochs, s.seed, False,
                                privacy=d.privacy_report())
            t0 = time.perf_counter()
            res = transcribe(data=train, teacher=tt, noise_mode="none", **base)
            add(f"dp-teacher student eps={eps:g}", "dp-teacher", eps, claimed_from_privacy(res.privacy),
                res.student, res.student_accuracy, time.perf_counter() - t0)


def format_study(study: Study) -> str:
    """One table: every released model with its accuracy, its claim (ε, δ, unit) and the audit figures.

    "eps LB" is the one-run bound (valid under that framework's assumptions,
    spelled out under the table); the AUC columns are descriptive.
    """
    def eps_text(r):
        if r["unit"] == "none":
            return "none (no DP mechanism)"
        return f"{r['epsilon']:.3g} per {r['unit']}, delta={r['delta'] if r['delta'] is not None else 0:g}" \
            if r["unit"] == "record" else f"{r['epsilon_target']:g} per teacher answer (record: none)"

    def lb_text(r):
        if r.get("eps_lower_bound") is None:
            return "—"
        above = r["unit"] == "record" and r["eps_lower_bound"] > r["epsilon"]  # contradicts the claim
        return f"{r['eps_lower_bound']:.2f}{'!' if above else ''}"

    head = (f"{'model':<26} {'claimed epsilon (unit)':<40} {'acc':>6} {'lossAUC [95% CI]':>21} "
            f"{'LiRA AUC [95% CI]':>21} {'LiRA TPR@1%':>11} {'eps LB':>7}")
    has_c = bool(study.canaries)
    if has_c:
        head += f" {'canary/control':>15}"
    lines = [head, "-" * len(head)]
    for r in study.rows:
        lira = (f"{r['lira_auc']:.3f} [{r['lira_auc_ci'][0]:.2f},{r['lira_auc_ci'][1]:.2f}]"
                if "lira_auc" in r else "—")
        line = (f"{r['model']:<26} {eps_text(r):<40} {100 * r['heldout_accuracy']:>5.1f}% "
                f"{r['loss_auc']:.3f} [{r['loss_auc_ci'][0]:.2f},{r['loss_auc_ci'][1]:.2f}] {lira:>21} "
                f"{r.get('lira_tpr@0.01', float('nan')):>11.3f} {lb_text(r):>7}")
        if has_c:
            line += f" {r['canary_rate']:>7.2f}/{r['control_rate']:<7.2f}"
        lines.append(line)
    st = study.settings
    lines.append(f"data: {study.data_name}. AUC / TPR columns (descriptive, no bound): members = private training "
                 "records of the teacher, non-members = held-out records, fixed by one split and scored on one model.")
    one_run = next((r["one_run"] for r in study.rows if "one_run" in r), None)
    if one_run is not None:
        lines.append(f"eps LB: one-run audit (Steinke, Nasr & Jagielski 2023, Cor. 5.4) on {one_run['m']} "
                     f"{st.canary_kind} canaries, each in the training set with probability 1/2 by a "
                     f"{'secret' if st.membership_seed is None else 'SEEDED (lesson only)'} coin flip, guesses on the "
                     f"loss ({one_run['variant']}). Under these assumptions, with {one_run['confidence']:.0%} "
                     f"confidence any training algorithm that is (eps, delta={one_run['delta']:g})-DP per record "
                     "must satisfy eps >= eps LB. '!' marks a bound above a record-level claim.")
    else:
        lines.append("eps LB: none (no canaries with randomised membership were planted, settings.canaries = 0).")
    lines += [
        "DPSD students (label/rr/data) carry eps per teacher answer, which makes NO claim per training record; "
        "DP-SGD and the ensemble claim eps per private training record.",
        "An audit gives a lower bound on leakage, never a proof of privacy.",
    ]
    if has_c:
        c = study.canaries[0]
        lines.append(f"canary/control: share of the {c['n']} canaries kept by the coin flip on which the model "
                     f"outputs the canary's label, vs the {c.get('n_control', c['n'])} canaries left out.")
    return "\n".join(lines)
