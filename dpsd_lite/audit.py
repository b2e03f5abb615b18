"""The empirical privacy audit: membership inference and planted canaries.

An audit runs attacks against a released model and measures how well they do.
It gives a **lower bound** on leakage: a successful attack proves the model
leaks, a failed one proves nothing (a better attack might succeed). Only the
accounting of a mechanism (:mod:`dpsd_lite.accounting`, Opacus) can give an
upper bound, and only for the unit it names.

Membership inference
--------------------
Members are the teacher's private training records, non-members the held-out
records (same distribution, never trained on). The split between them was
drawn at random (stratified, fixed seed), which is what makes the ε lower
bound below meaningful.

* **Loss threshold** (Yeom et al. 2018): score = −cross-entropy of the
  model on the record; members tend to have lower loss.
* **Offline LiRA** (Carlini et al. 2022), laptop-sized: small shadow models
  (the :class:`~dpsd_lite.models.Student` architecture) are trained on random
  halves of the held-out pool, in complementary pairs, so each held-out
  record is *out* for half of them and every private record is out for all.
  For each record the shadows' logit-scaled confidences
  φ = log p_y − log(1 − p_y) when it was *out* give a per-record mean μ_out;
  with so few shadows one pooled standard deviation σ_out is used (LiRA's
  fixed-variance variant). The score is (φ_target − μ_out)/σ_out: how much
  more confident the target is on this record than models that never saw it.

Figures: ROC AUC with a bootstrap confidence interval, TPR at 1% and 0.1% FPR
with bootstrap intervals (with n non-members an FPR below 1/n cannot be
resolved: the output says so), and the **empirical ε lower bound**: for a
threshold chosen on one half of the records, Clopper–Pearson bounds on TPR
and FPR on the other half give, with the stated confidence, any (ε, δ)-DP
training algorithm (per record) must satisfy
``e^ε ≥ (TPR − δ)/FPR`` and ``e^ε ≥ (1 − FPR − δ)/(1 − TPR)``.
This bound is comparable only with a *record-level* claimed ε (DP-SGD, the
teacher ensemble). The per-query ε of the ``label``, ``rr`` and ``data``
modes is not a claim about records at all.

Canaries
--------
:func:`plant_canaries` relabels a few private records with a wrong label in a
copy of the data; models are trained on that copy as usual, and
:func:`canary_exposure` counts how often a model outputs the canary label on
the canary images, against control images (held-out images of the same
kind, given wrong labels by the same rule, never trained on).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta, fisher_exact

from .data import DataSplits
from .errors import DpsdError
from .models import Student
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
    "epsilon_lower_bound",
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
def _logits(model, x, batch_size=500) -> torch.Tensor:
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
    """ε lower bound from one threshold's counts, each rate bounded one-sidedly at level α/2."""
    tpr_lo = _cp_one_sided(tp, n_in, alpha / 2, upper=False)
    fpr_hi = _cp_one_sided(fp, n_out, alpha / 2, upper=True)
    best = 0.0
    if tpr_lo - delta > 0 and fpr_hi > 0:
        best = max(best, math.log((tpr_lo - delta) / fpr_hi))
    if 1 - fpr_hi - delta > 0 and 1 - tpr_lo > 0:
        best = max(best, math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))
    return best, tpr_lo, fpr_hi


def epsilon_lower_bound(s_in, s_out, delta=1e-5, confidence=0.95, seed=0) -> dict:
    """Empirical ε lower bound implied by an attack, with ``confidence`` (Clopper–Pearson).

    The records are split at random in two halves: the threshold is chosen on
    the first (the one with the largest bound there), and the bound is
    computed on the second, so choosing the threshold does not inflate it.
    Valid against a claim of (ε, δ)-DP per record when membership was decided
    at random; with n non-members it can never exceed about log(n / 3.7).
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
    return {"epsilon_lower_bound": eps, "delta": delta, "confidence": confidence, "threshold": float(t),
            "tp": tp, "n_members": len(ev_in), "fp": fp, "n_nonmembers": len(ev_out),
            "tpr_lower": tpr_lo, "fpr_upper": fpr_hi,
            "method": "Clopper-Pearson bounds on TPR and FPR at a threshold chosen on a disjoint half"}


def attack_metrics(s_in, s_out, n_boot=200, confidence=0.95, seed=0, delta=1e-5) -> dict:
    """AUC and TPR at each of ``FPR_LEVELS``, with bootstrap percentile intervals, ROC curve, ε lower bound."""
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
    return {
        "auc": _auc(s_in, s_out), "auc_ci": ci(boots["auc"]),
        "tpr_at_fpr": {f: {"tpr": _tpr_at_fpr(s_in, s_out, f), "ci": ci(boots[f]),
                           "resolvable": f * len(s_out) >= 1} for f in FPR_LEVELS},
        "roc": {"fpr": fpr, "tpr": tpr},
        "n_members": len(s_in), "n_nonmembers": len(s_out), "confidence": confidence, "n_boot": int(n_boot),
        **{"eps_lb": epsilon_lower_bound(s_in, s_out, delta=delta, confidence=confidence, seed=seed)},
    }


@dataclass
class AttackResult:
    """One attack on one model: scores, metrics and the claim it is compared with."""

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
    def epsilon_lower_bound(self) -> float:
        return self.metrics["eps_lb"]["epsilon_lower_bound"]

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
        row["eps_lb_confidence"] = m["eps_lb"]["confidence"]
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


def lira_attack(model, shadows: ShadowModels, x_in, y_in, x_out, y_out, target="model", claimed=None,
                n_boot=200, seed=0, delta=1e-5) -> AttackResult:
    """Offline LiRA (fixed variance). ``x_out`` must be the shadows' pool (``shadows.in_mask`` columns).

    Members (``x_in``) were never in the pool, so every shadow is *out* for them.
    """
    if shadows.in_mask.shape[1] != len(y_out):
        raise DpsdError("LiRA: the non-members must be exactly the shadow models' pool")
    x = torch.cat([x_in, x_out])
    y = torch.cat([y_in, y_out])
    out = torch.cat([torch.ones(len(shadows), len(y_in), dtype=torch.bool), ~shadows.in_mask], 1).numpy()
    phi = np.stack([logit_confidence(m, x, y) for m in shadows.models])  # S×N
    n_out = out.sum(0)
    if (n_out == 0).any():
        raise DpsdError("LiRA: some records are in every shadow model; use complementary pairs")
    mu = (phi * out).sum(0) / n_out
    resid = (phi - mu)[out]
    sigma = max(float(resid.std()), 1e-6)
    score = (logit_confidence(model, x, y) - mu) / sigma
    s_in, s_out = score[: len(y_in)], score[len(y_in):]
    return AttackResult("lira-offline", target, s_in, s_out,
                        attack_metrics(s_in, s_out, n_boot, seed=seed, delta=delta), dict(claimed or NO_RECORD_CLAIM))


# ---------------------------------------------------------------------------- the audit

def membership_sets(data: DataSplits, n_members: int | None = None, seed: int = 0):
    """(x_in, y_in, x_out, y_out): a random subset of private records (as many as held-out ones) and the held-out split."""
    n = len(data.y_heldout) if n_members is None else int(n_members)
    n = min(n, len(data.y_private))
    idx = torch.randperm(len(data.y_private), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data.x_private[idx], data.y_private[idx], data.x_heldout, data.y_heldout


def audit_model(model, data: DataSplits, target: str = "model", claimed: dict | None = None,
                shadows: ShadowModels | None = None, n_boot: int = 200, seed: int = 0,
                delta: float = 1e-5, n_members: int | None = None) -> list:
    """Both attacks on ``model``: the teacher's private records (members) vs held-out records.

    Pass ``shadows`` (from :func:`train_shadow_models` on the held-out split)
    to reuse them across targets; without them only the loss attack runs.
    Returns a list of :class:`AttackResult`.
    """
    x_in, y_in, x_out, y_out = membership_sets(data, n_members, seed)
    results = [loss_attack(model, x_in, y_in, x_out, y_out, target, claimed, n_boot, seed, delta)]
    if shadows is not None:
        results.append(lira_attack(model, shadows, x_in, y_in, x_out, y_out, target, claimed, n_boot, seed, delta))
    return results


def _claim_text(c: dict) -> str:
    if c["epsilon"] == math.inf or c["delta"] is None:
        return f"claimed: {c['unit']}"
    return f"claimed: eps={c['epsilon']:.3g}, delta={c['delta']:g}, per {c['unit']}"


def format_audit(results) -> str:
    """A plain-text table of attack results, each beside its claim (ε, δ, unit)."""
    head = (f"{'target':<22} {'attack':<13} {'AUC [95% CI]':<22} {'TPR@1%FPR [CI]':<22} "
            f"{'TPR@0.1%FPR [CI]':<22} {'eps lower bound':<16} claim")
    lines = [head, "-" * len(head)]
    for r in results:
        s = r.summary()
        t1, t2 = r.metrics["tpr_at_fpr"][0.01], r.metrics["tpr_at_fpr"][0.001]
        note = "" if t2["resolvable"] else "*"
        lines.append(
            f"{r.target:<22} {r.attack:<13} {s['auc']:.3f} [{s['auc_lo']:.3f}, {s['auc_hi']:.3f}]   "
            f"{t1['tpr']:.3f} [{t1['ci'][0]:.3f}, {t1['ci'][1]:.3f}]   "
            f"{t2['tpr']:.3f} [{t2['ci'][0]:.3f}, {t2['ci'][1]:.3f}]{note:<2} "
            f"{s['eps_lower_bound']:<16.3f} {_claim_text(r.claimed)}")
    if any(not r.metrics["tpr_at_fpr"][0.001]["resolvable"] for r in results):
        lines.append("* fewer than 1,000 non-members: an FPR of 0.1% cannot be resolved; this is TPR at FPR = 0 observed")
    lines.append("An audit is a lower bound on leakage, never a proof of privacy. The eps lower bound "
                 f"({results[0].metrics['eps_lb']['confidence']:.0%} confidence) is comparable only with a record-level claim.")
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
    """Plain-text table of :func:`canary_exposure` rows."""
    head = f"{'target':<22} {'canary label on canaries':<28} {'on controls':<24} {'p (Fisher)':<11} claim"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['target']:<22} {r['canary_hits']:>3}/{r['n']:<3} = {r['canary_rate']:.2f} "
                     f"[{r['canary_ci'][0]:.2f}, {r['canary_ci'][1]:.2f}]   "
                     f"{r['control_hits']:>3}/{r['n']:<3} = {r['control_rate']:.2f} "
                     f"[{r['control_ci'][0]:.2f}, {r['control_ci'][1]:.2f}]  {r['p_value']:<11.3g} {_claim_text(r['claimed'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- claims of released models

def claimed_from_privacy(privacy: dict) -> dict:
    """The record-level claim a privacy report makes (ε, δ, unit), for printing beside an attack.

    Per-query reports (``label``, ``rr``, ``data``) make no record-level claim:
    the returned unit says so and quotes their per-answer ε.
    """
    unit = str(privacy.get("unit_of_privacy", ""))
    eps, delta = privacy.get("epsilon"), privacy.get("delta")
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
    from .teacher import get_teacher

    if not hasattr(run, "student"):
        run = load_run(run, device=device)
    cfg = run.config
    if data is None:
        data = load_dataset(cfg.dataset, root=cfg.data_root, download=False)
    if teacher is None:
        teacher = get_teacher(data, epochs=cfg.teacher_epochs, seed=cfg.seed, device=device, cache_dir=cache_dir)
    shadows = train_shadow_models(data.x_heldout, data.y_heldout, num_shadows, shadow_epochs, seed=seed) \
        if num_shadows else None
    results = audit_model(teacher.model, data, "teacher", NO_PRIVACY_CLAIM, shadows, n_boot, seed)
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
    canaries: int = 40  # mislabeled records planted in the private split (0: none)
    seed: int = 0


@dataclass
class Study:
    rows: list  # one per released model: accuracy, claim, audit figures
    attacks: list  # every AttackResult
    canaries: list  # canary_exposure rows
    settings: StudySettings
    data_name: str


def privacy_study(data: DataSplits, settings: StudySettings | None = None, cache_dir=None, device="cpu",
                  log=print) -> Study:
    """Train and audit every model side by side: teacher, DPSD students per mode and ε, ensemble, DP-SGD.

    With ``settings.canaries > 0`` the mislabeled canaries are planted in the
    private split first and *every* model is trained on that copy (so one set
    of models serves both the membership and the canary audit); membership
    members are drawn from the non-canary private records.
    """
    from .dpsgd import train_dpsgd
    from .ensemble import train_teacher_ensemble, transcribe_with_ensemble
    from .teacher import get_teacher
    from .transcribe import transcribe

    s = settings or StudySettings()
    log = log or (lambda *a, **k: None)
    cs = plant_canaries(data, s.canaries, s.seed) if s.canaries else None
    train = cs.data if cs is not None else data
    clean = torch.ones(len(train.y_private), dtype=torch.bool)
    if cs is not None:
        clean[cs.canary_index] = False
    members = DataSplits(train.name, train.x_private[clean], train.y_private[clean], train.x_heldout,
                         train.y_heldout, train.class_names)  # only for choosing audit members
    log(f"teacher on {train.name} ({len(train.y_private)} private records)")
    teacher = get_teacher(train, epochs=s.teacher_epochs, seed=s.seed, device=device, cache_dir=cache_dir)
    log(f"{s.num_shadows} shadow models on halves of the {len(train.y_heldout)} held-out records")
    shadows = train_shadow_models(train.x_heldout, train.y_heldout, s.num_shadows, s.shadow_epochs, seed=s.seed) \
        if s.num_shadows else None
    rows, attacks, canary_rows = [], [], []

    def add(model_name, mode, eps_target, privacy_claim, model, accuracy_):
        res = audit_model(model, members, model_name, privacy_claim, shadows, s.n_boot, s.seed, s.delta)
        attacks.extend(res)
        row = {"model": model_name, "mode": mode, "epsilon_target": eps_target,
               "epsilon": privacy_claim["epsilon"] if privacy_claim["unit"] == "record" else eps_target,
               "delta": privacy_claim["delta"], "unit": "record" if privacy_claim["unit"] == "record" else
               ("teacher answer" if math.isfinite(eps_target) else "none"),
               "record_claim": privacy_claim, "heldout_accuracy": accuracy_}
        for r in res:
            key = "lira" if r.attack.startswith("lira") else "loss"
            row[f"{key}_auc"], row[f"{key}_auc_ci"] = r.auc, r.auc_ci
            row[f"{key}_tpr@0.01"] = r.tpr_at(0.01)
            row[f"{key}_eps_lb"] = r.epsilon_lower_bound
        row["eps_lower_bound"] = max(r.epsilon_lower_bound for r in res)
        if cs is not None:
            c = canary_exposure(model, cs, model_name, privacy_claim)
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
            d = train_dpsgd(train, eps, s.delta, seed=s.seed, device=device, **s.dpsgd)
            add(f"dpsgd eps={eps:g}", "dpsgd", eps, claim(d.epsilon, d.delta, "record"), d.model,
                d.heldout_accuracy)
    return Study(rows, attacks, canary_rows, s, train.name)


def format_study(study: Study) -> str:
    """One table: every released model with its accuracy, its claim (ε, δ, unit) and the audit figures."""
    def eps_text(r):
        if r["unit"] == "none":
            return "none (no DP mechanism)"
        return f"{r['epsilon']:.3g} per {r['unit']}, delta={r['delta'] if r['delta'] is not None else 0:g}" \
            if r["unit"] == "record" else f"{r['epsilon_target']:g} per teacher answer (record: none)"

    head = (f"{'model':<20} {'claimed epsilon (unit)':<40} {'acc':>6} {'lossAUC [95% CI]':>21} "
            f"{'LiRA AUC [95% CI]':>21} {'LiRA TPR@1%':>11} {'eps LB':>7}")
    has_c = bool(study.canaries)
    if has_c:
        head += f" {'canary/control':>15}"
    lines = [head, "-" * len(head)]
    for r in study.rows:
        lira = (f"{r['lira_auc']:.3f} [{r['lira_auc_ci'][0]:.2f},{r['lira_auc_ci'][1]:.2f}]"
                if "lira_auc" in r else "—")
        line = (f"{r['model']:<20} {eps_text(r):<40} {100 * r['heldout_accuracy']:>5.1f}% "
                f"{r['loss_auc']:.3f} [{r['loss_auc_ci'][0]:.2f},{r['loss_auc_ci'][1]:.2f}] {lira:>21} "
                f"{r.get('lira_tpr@0.01', float('nan')):>11.3f} {r['eps_lower_bound']:>7.2f}")
        if has_c:
            line += f" {r['canary_rate']:>7.2f}/{r['control_rate']:<7.2f}"
        lines.append(line)
    lines += [
        f"data: {study.data_name}; members = private training records of the teacher, non-members = held-out records; "
        f"eps LB = empirical lower bound (delta={study.settings.delta:g}): the larger of the two attacks' bounds, "
        f"each at 95% confidence.",
        "DPSD students (label/rr/data) carry eps per teacher answer, which makes NO claim per training record; "
        "DP-SGD and the ensemble claim eps per private training record.",
        "An audit gives a lower bound on leakage, never a proof of privacy.",
    ]
    if has_c:
        lines.append(f"canary/control: share of the {study.canaries[0]['n']} planted mislabeled records on which the model outputs the planted label, vs the same rule on "
                     "held-out control images.")
    return "\n".join(lines)
