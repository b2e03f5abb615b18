"""How an attack on a released model is scored and measured, and the claim it is set beside.

* **Scores** (higher = more member-like): :func:`loss_scores`, −cross-entropy of the model on the record (the
  loss-threshold attack, Yeom et al. 2018), and :func:`logit_confidence`, LiRA's logit-scaled confidence.
* **Metrics** (:func:`attack_metrics`): ROC AUC with a bootstrap confidence interval, TPR at 1% and 0.1% FPR
  with bootstrap intervals (with n non-members an FPR below 1/n cannot be resolved: the tables say so), and a
  **pooled ε statistic** (:func:`pooled_epsilon_statistic`): the ε that Clopper–Pearson bounds on TPR and FPR
  would imply if every record were an independent trial of one membership test. On a fixed split they are not,
  so it is a descriptive statistic and is printed as one.
* :class:`AttackResult`: one attack on one model, its metrics and the claim it is compared with
  (:func:`claim`: ε, δ and the unit they protect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta, rankdata

__all__ = [
    "FPR_LEVELS",
    "claim",
    "NO_RECORD_CLAIM",
    "NO_PRIVACY_CLAIM",
    "loss_scores",
    "logit_confidence",
    "clopper_pearson",
    "pooled_epsilon_statistic",
    "attack_metrics",
    "AttackResult",
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
    from sklearn.metrics import roc_curve  # here, not at the top: scikit-learn takes half a second to import

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
