"""The empirical privacy audit: membership inference and planted canaries.

An audit runs attacks against a released model and measures how well they do. It gives a **lower bound** on
leakage: a successful attack proves the model leaks, a failed one proves nothing (a better attack might succeed).
Only the accounting of a mechanism (:mod:`dpsd_lite.accounting`, Opacus) can give an upper bound, and only for the
unit it names. And an audit's number is a *bound* only under its framework's assumptions; every table here says,
for every figure it prints, which framework (if any) makes it one.

* :mod:`~dpsd_lite.audit.metrics`: how an attack is scored and measured (loss and LiRA scores, AUC, TPR at low
  FPR, Clopper–Pearson intervals, the descriptive pooled ε statistic), :class:`AttackResult` and the claim it is
  set beside.
* :mod:`~dpsd_lite.audit.one_run`: the one-run audit (Steinke, Nasr & Jagielski, NeurIPS 2023): canaries each
  kept by a secret coin flip, one model trained, and a valid ε lower bound from the count of correct guesses.
* :mod:`~dpsd_lite.audit.attacks`: shadow models, the loss and LiRA attacks on a fixed split (descriptive
  figures), canaries with controls, and the audit of one model (:func:`audit_model`) or a saved run
  (:func:`audit_run`, ``dpsd-lite audit RUN``).
* :mod:`~dpsd_lite.audit.study`: the side-by-side privacy study of every released model (:func:`privacy_study`).

Every public name is importable from ``dpsd_lite.audit`` itself.
"""

from . import attacks, metrics, one_run, study
from .attacks import (CanarySet, ShadowModels, audit_model, audit_run, canary_exposure, claimed_from_privacy,
                      format_audit, format_canaries, lira_attack, lira_out_mask, loss_attack, membership_sets,
                      plant_canaries, plot_roc, train_classifier, train_shadow_models)
from .metrics import (FPR_LEVELS, NO_PRIVACY_CLAIM, NO_RECORD_CLAIM, AttackResult, attack_metrics, claim,
                      clopper_pearson, logit_confidence, loss_scores, pooled_epsilon_statistic)
from .one_run import (ONE_RUN_GUESS_FRACTIONS, OneRunCanaries, draw_membership, one_run_attack, one_run_audit,
                      one_run_epsilon_from_counts, one_run_epsilon_lower_bound, one_run_exposure, one_run_guess_grid,
                      one_run_guesses, one_run_p_value, plant_one_run_canaries)
from .study import (Study, StudySettings, audit_verdicts, format_study, format_verdicts, plot_privacy_utility,
                    privacy_study)

__all__ = [*metrics.__all__, *one_run.__all__, *attacks.__all__, *study.__all__]
