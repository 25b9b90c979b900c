"""Hook specifications: the only way the runner talks to plugins.

Grouped by stage, in the order a run calls them. A hookimpl may accept any subset of a
hook's arguments, so new arguments can be added without breaking plugins. Results
combine as each docstring says: ``firstresult`` hooks stop at the first non-None
result ("pick one provider"); all others collect every plugin's result.

Evolution: arguments are only added, each docstring saying when (``versionadded`` /
``versionchanged``); an argument is removed only after one minor release in which the spec
lists it in pluggy's ``warn_on_impl_args`` (docs/hooks.md, "Evolving the hooks").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from datetime import date

    import click
    import pandas as pd

    from assay.kernel.spec import RunSpec
    from assay.kernel.types import (
        Baseline,
        Check,
        Dataset,
        Event,
        Evidence,
        FittedModel,
        MonitorContext,
        RuleOutcome,
        Run,
        SampleWeights,
        Scores,
        Splits,
        StageSummary,
        Trainer,
        Tuner,
        Verdict,
    )

hookspec = pluggy.HookspecMarker("assay")
hookimpl = pluggy.HookimplMarker("assay")

# --------------------------------------------------------------------------- lifecycle


@hookspec
def run_started(run: Run) -> None:
    """Announce that a run has begun, after the spec is validated and before data loads.

    :param run: the run context (id, spec, settings).

    All implementations are called; return values are ignored.

    .. versionadded:: 0.1
    """


@hookspec
def stage_started(run: Run, stage: str) -> None:
    """Announce that a stage (``data``, ``split``, ``train``, ``evaluate``, ``gate``) begins.

    :param run: the run context.
    :param stage: the stage name.

    For progress displays and timing. All implementations are called.

    .. versionadded:: 0.1
    """


@hookspec
def stage_finished(run: Run, stage: str, summary: StageSummary) -> None:
    """Announce that a stage has finished.

    :param run: the run context.
    :param stage: the stage name.
    :param summary: what the stage produced: a read-only mapping of JSON-able values (rows, best score, ...).

    All implementations are called.

    .. versionadded:: 0.1
    """


@hookspec
def stage_progress(run: Run, stage: str, done: int, total: int, label: str) -> None:
    """Report how far a long stage has come (training: CV fits of every candidate family).

    :param run: the run context.
    :param stage: the stage name.
    :param done: units of work finished so far (for training: candidate × fold fits, and refits).
    :param total: units expected in the whole stage (an estimate; it may grow, never below ``done``).
    :param label: what is being worked on now, e.g. ``hist_gradient_boosting: iteration 2 of 3``.

    Plugins do not call this hook: they call ``run.progress(stage, done, total, label)``,
    which the runner relays here. For progress displays. All implementations are called.

    .. versionadded:: 0.1
    """


@hookspec
def run_finished(run: Run, verdict: Verdict, evidence: dict[str, Any]) -> None:
    """Announce that a run completed and was gated.

    :param run: the run context.
    :param verdict: the gate's decision.
    :param evidence: the run's evidence document.

    All implementations are called.

    .. versionadded:: 0.1
    """


@hookspec
def run_failed(run: Run, error: BaseException, stage: str) -> None:
    """Announce that a run stopped with an error; the run is recorded as errored.

    :param run: the run context.
    :param error: the exception.
    :param stage: the stage that was running.

    All implementations are called; a plugin raising here is reported, not propagated.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- data


@hookspec(firstresult=True)
def load_data(spec: RunSpec, source: str, base_dir: str) -> Dataset | None:
    """Load ``source`` into a fingerprinted :class:`Dataset`, or return None if not yours.

    :param spec: the validated run spec (target, task, column roles).
    :param source: the ``data.source`` value (a path relative to ``base_dir``, or a URL).
    :param base_dir: the spec file's directory.

    Stops at the first non-None result: one loader per source kind.

    .. versionadded:: 0.1
    """


@hookspec
def validate_data(run: Run, dataset: Dataset) -> Sequence[Check | Evidence] | None:
    """Check the loaded data (schema, missing values, constant columns, label balance).

    :param run: the run context.
    :param dataset: the loaded dataset.

    All results are collected into the evidence.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def split_data(run: Run, dataset: Dataset) -> Splits | None:
    """Split the dataset into a holdout and CV folds per ``[split]``.

    :param run: the run context.
    :param dataset: the loaded dataset.

    Stops at the first non-None result.

    .. versionadded:: 0.1
    """


@hookspec
def check_split(run: Run, splits: Splits, target_domain: Dataset | None) -> Sequence[Check | Evidence | SampleWeights] | None:
    """Check the split for leakage (duplicates, shared entities, time order, ...).

    :param run: the run context.
    :param splits: the holdout split and CV folds.
    :param target_domain: the ``data.target_domain`` table, loaded once by the runner (None when not set).

    All results are collected. A plugin that derives training weights from what it saw
    (domain weighting) returns them as one :class:`SampleWeights` item; the runner passes
    it to ``fit_model``. More than one plugin returning weights is an error.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- training


@hookspec
def register_trainers(register: Callable[[Trainer], None]) -> None:
    """Contribute model families by calling ``register(Trainer(...))``.

    :param register: the core's callback; it validates each trainer on the way in.

    All implementations are called; later registrations of a name replace earlier ones.

    .. versionadded:: 0.1
    """


@hookspec
def register_tuners(register: Callable[[Tuner], None]) -> None:
    """Contribute hyper-parameter search strategies by calling ``register(Tuner(...))``.

    :param register: the core's callback.

    All implementations are called.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def fit_model(run: Run, splits: Splits, trainers: Sequence[Trainer], tuner: Tuner,
              sample_weights: SampleWeights | None) -> FittedModel | None:
    """Search the candidate families on the training part only and refit the best one.

    :param run: the run context.
    :param splits: the split; the holdout must not be used here.
    :param trainers: the candidate families for the task.
    :param tuner: the search strategy.
    :param sample_weights: per-row weights a ``check_split`` plugin returned, or None.

    Report how the model was fitted in the :class:`FittedModel`'s conduct fields
    (``preprocessing_inside_cv``, ``holdout_used_in_tuning``, ...): the leakage checks read them.

    Stops at the first non-None result.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- evaluation


@hookspec(firstresult=True)
def fit_baseline(run: Run, splits: Splits) -> Baseline | None:
    """Fit the baseline named by ``evaluate.baseline`` on the training part.

    :param run: the run context.
    :param splits: the split; fit on the training part only.

    Stops at the first non-None result. The runner calls it once per run, after fitting and
    before any ``evaluate``. When every implementation returns None the runner loads
    ``evaluate.baseline`` as a registered version (``NAME@latest``: the latest version trained
    before this run, never this run's own model).

    .. versionadded:: 0.1
    """


@hookspec
def evaluate(run: Run, model: FittedModel, splits: Splits, scores: Scores,
             target_domain: Dataset | None) -> Sequence[Check | Evidence] | None:
    """Measure the fitted model: metrics, baseline, generalization gap, fairness, cost.

    :param run: the run context.
    :param model: the selected, refitted model.
    :param splits: the split (the holdout is used here for the first time).
    :param scores: the model's and the baseline's predictions on the holdout and the scored
        training rows, made once by the runner: read them instead of predicting again.
    :param target_domain: the ``data.target_domain`` table (None when not set).

    All results are collected and merged into the evidence.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- gating


@hookspec
def register_policies(register: Callable[[str, str], None]) -> None:
    """Contribute named policy packs by calling ``register(name, toml_text)``.

    :param register: the core's callback; names look like ``assay:standard``.

    All implementations are called.

    .. versionadded:: 0.1
    """


@hookspec
def gate(run: Run, evidence: dict[str, Any], policy: Any, stage: str, waivers: Sequence[Mapping[str, Any]],
         today: date | None) -> Sequence[RuleOutcome] | None:
    """Evaluate a policy's rules on the evidence document (never on live objects).

    :param run: the run context (its id and spec; the evidence is the only input to judge).
    :param evidence: the run's evidence document.
    :param policy: the loaded policy.
    :param stage: the stage whose rules apply (``train`` for a training run).
    :param waivers: waivers in force for the run's model, as read from the ledger (``Waiver.to_json()``).
    :param today: the UTC date waiver expiry is judged on (None: today).

    All outcomes are collected; any ``block`` or ``error`` outcome blocks the verdict, and so
    does a gate where no plugin's rule applied to the stage (fail closed).

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- monitoring


@hookspec
def monitor(run: Run, reference: pd.DataFrame, current: pd.DataFrame,
            context: MonitorContext) -> Sequence[Check | Evidence] | None:
    """Compare a production batch with the training-time reference (drift, performance).

    :param run: the training run being monitored.
    :param reference: the reference sample stored at training time.
    :param current: the new batch.
    :param context: the monitoring run, as the runner loaded it: its id, the training run's
        evidence, both frames, whether the batch is labelled, the policy judging it, the trained
        model and the holdout sample with the model's stored output on it. Report long work
        with ``run.progress("monitor", done, total, label)``.

    All results are collected; the runner then gates them with the policy's ``monitor`` rules.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- audit


@hookspec
def record(run: Run, event: Event) -> Any:
    """Record an event of the run (start, data, split, checks, metrics, model, verdict, end).

    :param run: the run context.
    :param event: what happened, with a JSON-able payload.

    All implementations are called; the ledger is one of them.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- CLI


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``assay`` command line.

    :param cli: the top-level click group.

    All implementations are called when a command is not a built-in one.

    .. versionadded:: 0.1
    """
