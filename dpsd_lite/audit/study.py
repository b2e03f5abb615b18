"""The side-by-side privacy study: every released model trained and audited on one copy of the data.

:func:`privacy_study` trains the teacher, the DPSD students (per mode and ε), the teacher ensemble's student and
DP-SGD (plain, and where the domain has public drawings, from public initial weights, with a student transcribed
from that DP model), audits each (:func:`~dpsd_lite.audit.attacks.audit_model`: loss and LiRA on the fixed split,
and the one-run bound on canaries every model shares, :mod:`~dpsd_lite.audit.one_run`), and returns one row per
model beside its claim. :func:`format_study` prints the table and :func:`plot_privacy_utility` draws accuracy
against ε.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..data import DataSplits
from ..dpsgd import describe_pretraining, split_recipe, train_dpsgd
from ..ensemble import train_teacher_ensemble, transcribe_with_ensemble
from ..generators import STROKE_FORMAT
from ..public_data import public_pretrained_student
from ..teacher import TrainedTeacher, get_teacher
from ..transcribe import transcribe
from ..utils import default_cache_dir
from .attacks import audit_model, claimed_from_privacy, train_shadow_models
from .metrics import NO_PRIVACY_CLAIM, claim
from .one_run import one_run_exposure, plant_one_run_canaries

__all__ = ["StudySettings", "Study", "privacy_study", "format_study", "plot_privacy_utility", "audit_verdicts",
           "format_verdicts"]


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
    # the DP-SGD settings of those two routes: None, the DP teacher's shipped recipe (dpsgd.DP_TEACHER, what
    # `dpsd-lite teacher --dp-epsilon E` trains); a dict, its train_dpsgd arguments (a smaller run)
    dp_teacher: dict | None = None
    plain_dpsgd: bool = True  # plain DP-SGD (settings.dpsgd) beside them; False: only the public-init routes


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

    def add(model_name, mode, eps_target, privacy_claim, model, accuracy_, seconds=None, **extra):
        res = audit_model(model, members, model_name, privacy_claim, shadows, s.n_boot, s.seed, s.delta,
                          canaries=cs, confidence=s.confidence)
        attacks.extend(res)
        row = {"model": model_name, "mode": mode, "epsilon_target": eps_target,
               "epsilon": privacy_claim["epsilon"] if privacy_claim["unit"] == "record" else eps_target,
               "delta": privacy_claim["delta"], "unit": "record" if privacy_claim["unit"] == "record" else
               ("teacher answer" if math.isfinite(eps_target) else "none"),
               "record_claim": privacy_claim, "heldout_accuracy": accuracy_, "seconds": seconds, **extra}
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
        if s.plain_dpsgd:
            for eps in s.epsilons:
                log(f"DP-SGD, eps={eps:g} per private record")
                t0 = time.perf_counter()
                d = train_dpsgd(train, eps, s.delta, seed=s.seed, device=device, **s.dpsgd)
                add(f"dpsgd eps={eps:g}", "dpsgd", eps, claim(d.epsilon, d.delta, "record"), d.model,
                    d.heldout_accuracy, time.perf_counter() - t0)
        public = s.dpsgd_public if s.dpsgd_public is not None else data.name in STROKE_FORMAT
        if public:
            _public_routes(s, data, train, base, device, add, log, cache_dir)
    return Study(rows, attacks, canary_rows, s, train.name)


def _public_routes(s, data, train, base, device, add, log, cache_dir=None):
    """The record-level route: the DP teacher (DP-SGD from weights trained on public drawings, with the shipped
    recipe unless ``s.dp_teacher`` says otherwise), and a student transcribed from that DP model (free)."""
    pretrain, recipe = split_recipe()
    recipe = recipe if s.dp_teacher is None else s.dp_teacher
    t0 = time.perf_counter()
    init = public_pretrained_student(data.name, seed=s.seed, device=device, cache_dir=cache_dir or default_cache_dir(),
                                     **pretrain)
    pretrain_seconds = time.perf_counter() - t0
    log(f"{describe_pretraining(pretrain)} ({pretrain_seconds:.0f} s)")
    for eps in s.epsilons:
        log(f"DP-SGD from the public initialisation (the DP teacher's recipe), eps={eps:g} per private record")
        t0 = time.perf_counter()
        d = train_dpsgd(train, eps, s.delta, seed=s.seed, device=device, init=init,
                        init_description=describe_pretraining(pretrain), **recipe)
        add(f"dpsgd-public eps={eps:g}", "dpsgd-public", eps, claim(d.epsilon, d.delta, "record"), d.model,
            d.heldout_accuracy, pretrain_seconds + time.perf_counter() - t0)
        if s.dp_teacher_student:
            log(f"student transcribed from that DP model (mode none: post-processing), eps={eps:g} per record")
            tt = TrainedTeacher(d.model, d.heldout_accuracy, d.private_accuracy, d.epochs, s.seed, False,
                                privacy=d.privacy_report())
            t0 = time.perf_counter()
            # teacher_dp_epsilon: the student starts from the DP model's weights, as `dpsd-lite transcribe
            # --teacher-dp-epsilon E` does (student_init), so the audited student is the one users get
            res = transcribe(data=train, teacher=tt, noise_mode="none", teacher_dp_epsilon=eps, **base)
            add(f"dp-teacher student eps={eps:g}", "dp-teacher", eps, claimed_from_privacy(res.privacy),
                res.student, res.student_accuracy, time.perf_counter() - t0, student_init=res.config.student_init)


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


def plot_privacy_utility(rows, ax=None, title=None):
    """Held-out accuracy against ε, one line per mode (DP-SGD and the ensemble included); returns the Figure.

    Solid lines: ε per private training record (DP-SGD, ensemble). Dashed:
    ε per teacher answer (``label``, ``rr``, ``data``) — a different unit, so
    the x positions of the two kinds are not the same guarantee.
    """
    from matplotlib.figure import Figure  # here, not at the top: only figures need matplotlib (most of a second)

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


def audit_verdicts(study: Study) -> list:
    """Does the audit agree with the claims? One verdict per model that has a one-run bound.

    * a model with a **record-level claim** (ε, δ per private record): the one-run ε lower bound must be at most
      the claimed ε (``"agrees"``); above it, the claim or the code is suspect (``"EXCEEDS THE CLAIM"``; at 95%
      confidence this happens by chance once in twenty audits of a correct claim);
    * the **teacher** (no privacy: the control): the audit should find leakage, a bound above 0 (``"leakage
      found"``); a bound of 0 means the attack is too weak for this setting (``"no leakage found: attack too
      weak"``), which also makes every "agrees" above weak evidence;
    * a model whose ε counts **teacher answers** (the DPSD students): nothing to compare (its claim per record is
      "none"), so no verdict.

    Returns ``[{"model", "role", "claimed_epsilon", "eps_lower_bound", "verdict", "ok"}]``.
    """
    out = []
    for r in study.rows:
        lb = r.get("eps_lower_bound")
        if lb is None:
            continue
        if r["mode"] == "teacher":
            found = lb > 0
            out.append({"model": r["model"], "role": "control (no privacy)", "claimed_epsilon": math.inf,
                        "eps_lower_bound": lb, "ok": found,
                        "verdict": "leakage found" if found else "no leakage found: attack too weak"})
        elif r["unit"] == "record":
            ok = lb <= r["epsilon"]
            out.append({"model": r["model"], "role": "record-level claim", "claimed_epsilon": r["epsilon"],
                        "eps_lower_bound": lb, "ok": ok, "verdict": "agrees" if ok else "EXCEEDS THE CLAIM"})
    return out


def format_verdicts(study: Study) -> str:
    """The verdicts of :func:`audit_verdicts` as a table, with the canary count that limits every bound."""
    m = study.settings.canaries
    lines = [f"one-run audit ({m} canaries, {study.settings.confidence:.0%} confidence, delta "
             f"{study.settings.delta:g}): lower bound beside each record-level claim",
             f"{'model':<30} {'role':<22} {'claimed eps':>12} {'lower bound':>12}  verdict"]
    for v in audit_verdicts(study):
        claimed = "none (inf)" if math.isinf(v["claimed_epsilon"]) else f"{v['claimed_epsilon']:.3g}"
        lines.append(f"{v['model']:<30} {v['role']:<22} {claimed:>12} {v['eps_lower_bound']:>12.2f}  {v['verdict']}")
    return "\n".join(lines)
