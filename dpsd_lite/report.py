"""The privacy report: what ε a run claims, with respect to what, and how it was computed."""

from __future__ import annotations

import math

import torch

from .accounting import rr_keep_probability, whole_run_epsilon
from .config import (CHOSEN_ON_PRIVATE_SPLIT, GENERIC_SHAPES_SCHEDULE, LEARNED_CHOSEN_ON_PRIVATE_SPLIT,
                     LEARNED_SELECTION_DATASETS, SELECTION_DATASETS)
from .mechanisms import EnsembleVote, Mechanism
from .names import run_generator_label
from .phases import balances_classes

UNIT_PER_QUERY = (
    "each answer the teacher gives to one synthetic query (per-query privacy: two neighbouring "
    "inputs are two possible teacher answers to the same query). Each answer is released once, "
    "so this epsilon covers each of the answers separately, without composition; it does NOT cover "
    "the answers together: all of them together are only as private as their composition, the epsilon of "
    "the whole run. So it does NOT bound what one private training record can reveal: one record can change "
    "the teacher's answer on every query. Record-level DP needs a teacher ensemble (PATE-style) or a "
    "DP-SGD-trained teacher."
)
UNIT_RECORD_DP_TEACHER = (
    "each private training record (add/remove one record of the private split): the teacher was trained with "
    "DP-SGD at this epsilon and delta, and the student, the generator and every answer released are "
    "post-processing of that teacher, so they inherit the guarantee whatever the noise mode"
)
TEACHER_ACCURACY_NOTE = ("the teacher's held-out accuracy (printed and saved beside the student's) is a "
                         "non-private statistic of the teacher, outside epsilon")
UNIT_RECORD_ENSEMBLE = (
    "each private training record (add/remove one record of the private split): records are assigned to "
    "teachers by a hash of their own content, so adding or removing one record changes exactly one teacher's "
    "partition and can move at most one vote; the epsilon is composed by the accountant over every query the "
    "ensemble answered, so it bounds what one training record can change in everything released, and in the "
    "student (post-processing). Replacing a record (remove one, add another) may change two teachers: that "
    "holds only by group privacy for two records, not at this epsilon"
)
UNIT_NONE = "nothing: mode 'none' releases the teacher's raw outputs; the student carries no privacy guarantee."
UNIT_WHOLE_RUN = ("what one private record can move through this non-private teacher: one record can change the "
                  "teacher, hence every answer, so all the run's answers compose")
NO_RECORD_LEVEL = ("none: the teacher is not private, so no epsilon bounds what one private training record can "
                   "reveal (record-level DP needs a DP-SGD teacher, --teacher-dp-epsilon, or a teacher ensemble)")


def three_levels(report: dict, delta: float | None = None) -> dict:
    """The three ε of a run, as machine-readable fields: per teacher answer, the whole run, per private record.

    * ``epsilon_per_answer`` (and ``delta_per_answer``): what the mechanism calibrates, for one teacher answer;
    * ``answers``, ``epsilon_whole_run``, ``delta_whole_run``, ``whole_run_accountant``: all the run's answers
      composed (:func:`~dpsd_lite.accounting.whole_run_epsilon`), what one private record can move through a
      non-private teacher (one record can change every answer);
    * ``epsilon_per_record`` (and ``delta_per_record``): ``None`` for a non-private teacher; a DP-SGD teacher's
      ε (everything after it is post-processing), or a record-level mechanism's own (the ensemble).

    ``delta``: the δ at which pure-ε answers (rr) compose, the run's δ (default: the report's
    ``whole_run_delta``, else 1e-5).
    """
    out = {}
    answers = int(report.get("teacher_queries", 0))
    private = bool(report.get("private"))
    record = report.get("unit") == "record"
    if record:  # the ensemble: each answer's noise is accounted per record, over every answer already
        out.update(unit="record", epsilon_per_answer=None, delta_per_answer=None, answers=answers,
                   epsilon_whole_run=report["epsilon"], delta_whole_run=report["delta"],
                   whole_run_accountant=report.get("accountant"),
                   epsilon_per_record=report["epsilon"], delta_per_record=report["delta"])
        return out
    out["unit"] = "answer" if private else "none"
    out["epsilon_per_answer"] = report["epsilon"] if private else math.inf
    out["delta_per_answer"] = report.get("delta") if private else None
    out["answers"] = answers
    if answers == 0:
        whole = {"epsilon": 0.0, "delta": out["delta_per_answer"] or 0.0, "accountant": "no answers were released"}
    elif not private:
        whole = {"epsilon": math.inf, "delta": None, "accountant": "none: the teacher's raw answers, no noise"}
    else:
        delta = report["delta"] or delta or report.get("whole_run_delta") or 1e-5
        whole = whole_run_epsilon(report["noise_mode"], answers, delta, epsilon=report["epsilon"],
                                  noise_multiplier=report.get("noise_multiplier"))
    out.update(epsilon_whole_run=whole["epsilon"], delta_whole_run=whole["delta"],
               whole_run_accountant=whole["accountant"], whole_run_unit=UNIT_WHOLE_RUN)
    rl = report.get("record_level")
    out["epsilon_per_record"] = rl["epsilon"] if rl else None
    out["delta_per_record"] = rl["delta"] if rl else None
    return out


def privacy_report(mechanism: Mechanism, queries: int, config=None, answer_set_sizes=None) -> dict:
    """A JSON-ready dict: mechanism, ε, δ, σ or keep probability, k, queries, accountant, unit.

    ``answer_set_sizes`` (``rr``): the size k of each query's answer set, a
    tensor with one entry per query. The report counts them (``k_used``:
    ``{k: count}``); the sets are chosen from the prior alone, so this costs
    no privacy, and it shows which keep probabilities the run actually used
    (``mean_keep_probability``: their average over the queries).
    """
    desc = mechanism.describe()
    report = {
        "noise_mode": desc["mode"],
        "mechanism": desc["mechanism"],
        "private": mechanism.private,
        "teacher_queries": int(queries),
    }
    if config is not None:  # which generator asked the queries: DPSD's learned one, or the renderer (a lesson)
        report["generator"] = run_generator_label(config)
    if not mechanism.private:
        report.update({"epsilon": math.inf, "delta": None, "unit_of_privacy": UNIT_NONE,
                       "accountant": "none"})
        report.update(three_levels(report))
        return report
    report.update({k: v for k, v in desc.items() if k not in ("mode", "mechanism")})
    if getattr(mechanism, "noise", None) is not None:  # secret or (opt-in) reproducible, with its warning
        report.update(mechanism.noise.describe())
    report["accountant"] = desc.get("accountant", desc.get("calibration"))
    report.pop("calibration", None)
    report["composition"] = desc.get("composition", "none needed: each teacher answer enters exactly one release")
    report["unit_of_privacy"] = desc.get("unit_of_privacy", UNIT_PER_QUERY)
    if answer_set_sizes is not None and len(answer_set_sizes) and desc["mode"] == "rr":
        k_used = {k: n for k, n in enumerate(torch.bincount(answer_set_sizes.cpu()).tolist()) if n}  # k ascending
        total = sum(k_used.values())
        report["k_used"] = {str(k): n for k, n in k_used.items()}
        report["mean_k"] = sum(k * n for k, n in k_used.items()) / total
        report["mean_keep_probability"] = sum(rr_keep_probability(desc["epsilon"], k) * n
                                              for k, n in k_used.items()) / total
    outside = [TEACHER_ACCURACY_NOTE]
    if config is not None:
        outside += settings_selection(config.dataset, config.generator,
                                      (config.generic_shapes, config.generic_shapes_end))
    report["not_covered_by_epsilon"] = outside
    if config is not None and mechanism.uses_prior:
        prior = "the student's own prediction"
        if config.prior_temperature != 1:
            prior += f" at temperature {config.prior_temperature:g}"
        prior += f", mixed with uniform (weight {config.prior_smoothing})"
        if config.warm_start_steps:
            prior += (f"; before the first query the student took {config.warm_start_steps} steps on the "
                      "generator's skeleton drawings labelled by the digit drawn (public, no teacher query)")
        report["prior"] = prior
    if config is not None and balances_classes(config, mechanism):
        report["requested_classes"] = (
            f"{config.class_balance:.0%} drawn in inverse proportion to each class's recent share of the "
            "released labels (post-processing of the releases, no privacy cost), the rest uniform")
    if desc["mode"] == "rr" and config is not None:
        report["whole_run_delta"] = config.delta  # rr is pure per answer; its answers compose at the run's δ
    report.update(three_levels(report))
    return report


def with_dp_teacher(report: dict, teacher_privacy: dict, student_init: str | None = None) -> dict:
    """The run's report with the record-level guarantee of a DP-SGD teacher added (``record_level``), and where the
    student started (``student_init`` teacher: from the DP teacher's weights, post-processing too)."""
    out = dict(report)
    out["record_level"] = {
        "epsilon": teacher_privacy["epsilon"], "delta": teacher_privacy["delta"],
        "mechanism": teacher_privacy["mechanism"], "accountant": teacher_privacy["accountant"],
        "noise_source": teacher_privacy.get("noise_source"),
        "initialisation": teacher_privacy.get("initialisation"),
        "unit_of_privacy": UNIT_RECORD_DP_TEACHER,
    }
    if student_init is not None:  # a transcription's report (not the teacher's own)
        out["record_level"]["student_initialisation"] = (
            "the DP teacher's weights (post-processing of the record-level DP model)" if student_init == "teacher"
            else "random")
    if teacher_privacy.get("warning"):
        out["warning"] = " ".join(filter(None, [out.get("warning"), "DP teacher: " + teacher_privacy["warning"]]))
    out["epsilon_per_record"], out["delta_per_record"] = teacher_privacy["epsilon"], teacher_privacy["delta"]
    return out


def _fmt_eps(eps) -> str:
    if eps is None:
        return "none"
    if math.isinf(eps):
        return "infinity"
    return f"{eps:.3g}" if eps < 1e4 else f"{eps:.2e}".replace("e+0", "e+").replace("e+", " × 10^")


def privacy_summary(report: dict) -> str:
    """Three short lines: ε per teacher answer, of the whole run, per private record (for the CLI, dashboard and
    notebooks; :func:`format_report` gives the whole report)."""
    if "epsilon_whole_run" not in report:
        report = {**report, **three_levels(report)}
    if report.get("unit") == "record":
        return (f"ε per private record: {_fmt_eps(report['epsilon_per_record'])} (δ = {report['delta_per_record']:g}), "
                f"composed over {report['answers']:,} answers")
    per_answer = ("∞ (mode none: no noise)" if report["unit"] == "none" else
                  f"{_fmt_eps(report['epsilon_per_answer'])}" + (f" (δ = {report['delta_per_answer']:g})"
                                                                  if report.get("delta_per_answer") else " (δ = 0)"))
    whole = ("∞" if report["epsilon_whole_run"] == math.inf else
             f"{_fmt_eps(report['epsilon_whole_run'])} (δ = {report['delta_whole_run']:g})")
    record = ("none (the teacher is not private)" if report.get("epsilon_per_record") is None else
              f"{_fmt_eps(report['epsilon_per_record'])} (δ = {report['delta_per_record']:g}, DP-SGD teacher)")
    return "\n".join([f"ε per teacher answer: {per_answer}",
                      f"ε of the whole run ({report['answers']:,} answers composed): {whole}",
                      f"ε per private record: {record}"])


def three_level_lines(report: dict) -> list:
    """Three lines, one per level: per teacher answer, the whole run, per private record (``three_levels``)."""
    if "epsilon_whole_run" not in report:  # a report saved before the three levels existed
        return []
    if report.get("unit") == "record":
        return ["per teacher answer: accounted per private record (below), not per answer",
                f"whole run: {report['answers']:,} answers, epsilon = {_fmt_eps(report['epsilon_whole_run'])}, "
                f"delta = {report['delta_whole_run']:g} per private record ({report['whole_run_accountant']})",
                f"per private record: epsilon = {_fmt_eps(report['epsilon_per_record'])}, "
                f"delta = {report['delta_per_record']:g}"]
    per_answer = ("infinity (mode none: no noise)" if report["unit"] == "none" else
                  f"{_fmt_eps(report['epsilon_per_answer'])}, delta = {report['delta_per_answer']:g}")
    whole = ("infinity: the teacher's raw answers reach the student" if report["epsilon_whole_run"] == math.inf
             else f"{_fmt_eps(report['epsilon_whole_run'])}, delta = {report['delta_whole_run']:g} "
                  f"({report['whole_run_accountant']})")
    record = (NO_RECORD_LEVEL if report.get("epsilon_per_record") is None else
              f"epsilon = {_fmt_eps(report['epsilon_per_record'])}, delta = {report['delta_per_record']:g} "
              f"(the DP-SGD teacher's; everything after it is post-processing)")
    return [f"epsilon per teacher answer: {per_answer}",
            f"epsilon of the whole run, {report['answers']:,} answers composed (what one private record can move "
            f"through this non-private teacher): {whole}",
            f"epsilon per private record: {record}"]


def _record_level_lines(report: dict) -> list:
    rl = report.get("record_level")
    if not rl:
        return []
    return [f"record level: epsilon = {rl['epsilon']:.3g}, delta = {rl['delta']:g} per private training record "
            f"({rl['mechanism']}; {rl['accountant']}; initialisation: {rl.get('initialisation') or 'random'})",
            f"record-level unit: {rl['unit_of_privacy']}"] + (
        [f"the student started from: {rl['student_initialisation']}"] if rl.get("student_initialisation") else [])


def settings_selection(dataset: str, generator: str = "learned", generic_shapes: tuple = (0.0, None)) -> list[str]:
    """What the report says about how the defaults were chosen, for a run on ``dataset`` with ``generator`` and
    the generic-shapes share ``(generic_shapes, generic_shapes_end)``.

    Choosing settings by comparing runs on private data is itself a release
    that no ε covers (Papernot & Steinke 2022). The defaults listed in
    :data:`dpsd_lite.config.CHOSEN_ON_PRIVATE_SPLIT` were chosen that way
    on mnist-5k's private split (images of MNIST's training set), and the
    learned generator's (:data:`dpsd_lite.config.LEARNED_CHOSEN_ON_PRIVATE_SPLIT`)
    on the private splits of mnist-5k and Fashion-MNIST: a run on those data
    discloses each; on other data those settings are public with respect to the data.
    """
    notes = []
    if dataset in SELECTION_DATASETS:
        notes.append(f"the defaults for {', '.join(CHOSEN_ON_PRIVATE_SPLIT)} were chosen by comparing transcriptions "
                     f"on mnist-5k's private split (the teacher's training images, part of MNIST's training set); "
                     f"that choice is itself a release about those images that this epsilon does not cover")
    if dataset in LEARNED_SELECTION_DATASETS:
        on_both = ("chosen by comparing transcriptions on the private splits of mnist-5k and of Fashion-MNIST (the "
                   "teachers' training images); that choice is itself a release about those images that this epsilon "
                   "does not cover")
        if generator == "learned":
            notes.append(f"the learned generator's defaults ({', '.join(LEARNED_CHOSEN_ON_PRIVATE_SPLIT)}) were "
                         f"{on_both}")
        start, end = GENERIC_SHAPES_SCHEDULE["generic_shapes"], GENERIC_SHAPES_SCHEDULE["generic_shapes_end"]
        if tuple(generic_shapes) == (start, end):
            notes.append(f"the generic-shapes schedule (the prior's share falling from {start:.0%} to {end:.0%} of "
                         f"the queries) was {on_both}")
    return notes


def format_report(report: dict) -> str:
    """Human-readable lines for the CLI and notebooks."""
    if not report.get("private"):
        if report.get("record_level"):
            return "\n".join(["noise mode: none — no noise on the teacher's answers (no per-answer epsilon)",
                              *three_level_lines(report), *_record_level_lines(report),
                              f"teacher queries: {report['teacher_queries']:,}"])
        return "\n".join(["noise mode: none — NOT private (epsilon = infinity)", *three_level_lines(report),
                          f"teacher queries: {report['teacher_queries']:,}"
                          + (f", asked by the {report['generator']}" if report.get("generator") else ""),
                          f"unit of privacy: {report['unit_of_privacy']}"])
    lines = [f"WARNING: {report['warning']}"] if report.get("warning") else []
    lines += three_level_lines(report)
    lines += _record_level_lines(report)
    lines += [f"noise mode: {report['noise_mode']} — {report['mechanism']}",
             f"epsilon = {report['epsilon']:g} "
             f"{'per private training record' if report.get('unit') == 'record' else 'per teacher answer'}, "
             f"delta = {report['delta']:g}"]
    if "noise_multiplier" in report:
        lines.append(f"noise multiplier sigma = {report['noise_multiplier']:.4f} "
                     f"(noise std {report['noise_std']:.4f}, L2 sensitivity {report['l2_sensitivity']:.4f})")
    if "top_k" in report:
        with_prior, without = report.get("queries_with_prior", 1), report.get("queries_without_prior", 0)
        if with_prior and without:
            lines.append(f"classes kept: the prior's top {report['top_k']} for {with_prior:,} answers, all classes "
                         f"for the {without:,} released without a prior")
        elif with_prior:
            lines.append(f"classes kept: the prior's top {report['top_k']}")
        else:
            lines.append("classes kept: all (no prior was given; with a prior, its top "
                         f"{report['top_k']} would be kept)")
    if "keep_probability_at_k" in report:
        keep = report["keep_probability_at_k"]
        shown = ", ".join(f"k={k}: {float(v):.4f}" for k, v in list(keep.items())[:4])
        lines.append(f"keep probability e^eps/(e^eps+k-1): {shown}, ... (k >= {report['k_min']})")
    if "answer_pairs" in report:
        lines.append(f"answers: the teacher's ordered top two classes, one of {report['answer_pairs']} pairs, kept "
                     f"with probability e^eps/(e^eps+{report['answer_pairs'] - 1}) = {report['keep_probability']:.4f}, "
                     f"else a uniform other pair")
    if "k_used" in report:
        total = sum(report["k_used"].values())
        shares = ", ".join(f"k={k}: {n / total:.0%}" if n / total >= 0.005 else f"k={k}: <1%"
                           for k, n in report["k_used"].items())
        lines.append(f"answer sets used (chosen from the prior, no privacy cost): {shares}; mean k = "
                     f"{report['mean_k']:.2f}, mean keep probability {report['mean_keep_probability']:.4f}")
    lines.append(f"teacher queries answered: {report['teacher_queries']:,}"
                 + (f", asked by the {report['generator']}" if report.get("generator") else ""))
    lines.append(f"accountant: {report['accountant']}; composition: {report['composition']}")
    if "prior" in report:
        lines.append(f"prior: {report['prior']}")
    if "requested_classes" in report:
        lines.append(f"requested classes: {report['requested_classes']}")
    if "noise_source" in report:
        lines.append(f"noise: {report['noise_source']}")
    lines.append(f"unit of privacy: {report['unit_of_privacy']}")
    for note in report.get("not_covered_by_epsilon", []):
        lines.append(f"not covered by epsilon: {note}")
    return "\n".join(lines)


def ensemble_privacy_report(mechanism: EnsembleVote) -> dict:
    """The ensemble's privacy report (JSON-ready), with the record-level unit."""
    desc = mechanism.describe()
    report = {"noise_mode": "ensemble", "mechanism": desc.pop("mechanism"), "private": True,
              "teacher_queries": desc["queries_answered"]}
    desc.pop("mode")
    report.update(desc)
    report["accountant"] = report.pop("calibration")
    report["unit_of_privacy"] = UNIT_RECORD_ENSEMBLE
    report.update(three_levels(report))
    return report


def format_ensemble_report(report: dict) -> str:
    """Human-readable lines: ε with δ and its record-level unit, σ, queries, accountant, noise source."""
    warning = [f"WARNING: {report['warning']}"] if report.get("warning") else []
    return "\n".join(warning + three_level_lines(report) + [
        f"noise mode: ensemble — {report['mechanism']}",
        f"epsilon = {report['epsilon']:.4g} per private training record (target {report['target_epsilon']:g}), "
        f"delta = {report['delta']:g}",
        f"noise multiplier sigma = {report['noise_multiplier']:.4f} (noise std {report['noise_std']:.4f} "
        f"on each vote count, L2 sensitivity {report['l2_sensitivity']:.4f})",
        f"queries answered: {report['queries_answered']:,} of a budget of {report['query_budget']:,}",
        f"accountant: {report['accountant']}; composition: {report['composition']}",
        f"noise: {report['noise_source']}",
        f"unit of privacy: {report['unit_of_privacy']}",
    ])
