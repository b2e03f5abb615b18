"""Membership-inference attacks on a released model, canaries, and the audit of one model or a saved run.

:func:`audit_model` runs the attacks on one model: loss and LiRA on a fixed split (descriptive figures, below)
and, given canaries with random membership (:mod:`~dpsd_lite.audit.one_run`), the one-run attack, whose ε lower
bound is valid. :func:`audit_run` audits a saved run's teacher and student (``dpsd-lite audit RUN``). How every
attack is measured is in :mod:`~dpsd_lite.audit.metrics`.

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

Figures (:mod:`~dpsd_lite.audit.metrics`): ROC AUC and TPR at 1% and 0.1% FPR
with bootstrap intervals, and the **pooled ε statistic**, which assumes
independent trials; here they are not, so it is descriptive and printed as one.

Canaries
--------
:func:`plant_canaries` relabels a few private records with a wrong label in a
copy of the data (all of them trained on); :func:`canary_exposure` counts how
often a model outputs the canary label on the canary images, against control
images (held-out images of the same kind, given wrong labels by the same rule,
never trained on). :func:`~dpsd_lite.audit.study.privacy_study` uses one-run
canaries instead, where the controls are the canaries the coin flip left out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import fisher_exact

from ..data import DataSplits, load_dataset
from ..errors import DpsdError
from ..models import Student, fit_classifier, minibatches
from ..runs import load_run
from ..teacher import teacher_for
from ..utils import channels_last, flush_denormals
from .metrics import (NO_PRIVACY_CLAIM, NO_RECORD_CLAIM, AttackResult, _logits, attack_metrics, claim,
                      clopper_pearson, logit_confidence, loss_scores)
from .one_run import OneRunCanaries, _wrong_labels, one_run_attack

__all__ = [
    "train_classifier",
    "ShadowModels",
    "train_shadow_models",
    "loss_attack",
    "lira_out_mask",
    "lira_attack",
    "membership_sets",
    "audit_model",
    "format_audit",
    "CanarySet",
    "plant_canaries",
    "canary_exposure",
    "format_canaries",
    "claimed_from_privacy",
    "audit_run",
    "plot_roc",
]


# ---------------------------------------------------------------------------- shadow models

def train_classifier(model, x, y, epochs=30, batch_size=32, lr=2e-3, seed=0):
    """Plain (non-private) minibatch Adam on (x, y) at a constant ``lr``: used for shadow models and test fixtures.

    The model is switched to channels-last in place (the CPU fast path, see :func:`~dpsd_lite.utils.channels_last`).
    """
    g = torch.Generator().manual_seed(int(seed))
    channels_last(model)
    n = len(y)
    batches = ((x[idx], y[idx]) for idx in minibatches(n, batch_size, g))
    with flush_denormals():
        fit_classifier(model, batches, int(epochs) * math.ceil(n / batch_size), lr)
    return model


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


# ---------------------------------------------------------------------------- loss and LiRA

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
    from matplotlib.figure import Figure  # here, not at the top: only figures need matplotlib (most of a second)

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
