"""How far a stage has come, for ``run.progress``: the training searches, in CV fits, and any loop.

:func:`assay.kit.steps` reports any other loop's progress (checks, bootstrap resamples).

scikit-learn's searches offer no progress callback that reaches this process from worker
processes in every supported version, so each search gets its candidates in slices: the
search's own ``_run_search`` (the documented way to drive ``evaluate_candidates``) still
decides what to try, and calling ``evaluate_candidates`` once per slice gives the same
``cv_results_`` (they accumulate), with a report after each slice. A slice holds at least
one candidate per worker, so the workers stay busy. Successive halving searches report
each iteration. A search that is not a scikit-learn search counts as one unit of work.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from assay import Run

#: the most reports per call of ``evaluate_candidates`` (each slice ends in a barrier)
SLICES_PER_BATCH = 8


def _candidates(search: Any) -> int | None:
    """How many settings the search tries first (None when it cannot be told in advance)."""
    from sklearn.model_selection import ParameterGrid

    if hasattr(search, "param_grid"):
        return len(ParameterGrid(search.param_grid))
    if isinstance(getattr(search, "n_iter", None), int):
        return int(search.n_iter)
    if isinstance(getattr(search, "n_candidates", None), int):
        return int(search.n_candidates)
    return None


def _halving_rounds(first: int, factor: float) -> list[int]:
    """Candidates per successive-halving iteration, until fewer than ``factor`` remain."""
    rounds = [first]
    while rounds[-1] >= factor:
        rounds.append(math.ceil(rounds[-1] / factor))
    return rounds


def _is_halving(search: Any) -> bool:
    return hasattr(search, "factor") and hasattr(search, "min_resources")


def planned_fits(search: Any, folds: int) -> int:
    """The CV fits ``search`` will run (an estimate for successive halving; 0 when unknown)."""
    if not callable(getattr(type(search), "_run_search", None)):  # not a scikit-learn search, whatever it forwards
        return 0
    first = _candidates(search)
    if first is None:
        return 0
    if _is_halving(search):
        return sum(_halving_rounds(first, float(search.factor))) * folds
    return first * folds


class TrainProgress:
    """Reports ``done`` / ``total`` fits of one train stage through ``run.progress``.

    Every family counts its planned CV fits plus one unit for the refit of its best setting.
    """

    def __init__(self, run: Run, searches: Sequence[tuple[str, Any]], folds: int, stage: str = "train") -> None:
        self.run, self.stage, self.folds = run, stage, folds
        self.plans = {name: planned_fits(search, folds) + 1 for name, search in searches}
        self.done = 0
        self.total = sum(self.plans.values())

    def report(self, label: str) -> None:
        self.total = max(self.total, self.done)
        self.run.progress(self.stage, self.done, self.total, label)

    @contextmanager
    def family(self, name: str, search: Any) -> Iterator[None]:
        """Around one family's ``search.fit``: report each slice of candidates, then the refit."""
        start, planned = self.done, self.plans.get(name, 1)
        instrumented = planned > 1 and _instrument(search, self._on_slice(name, search))
        self.report(f"{name}: starting" if instrumented else f"{name}: searching")
        try:
            yield
        finally:
            if instrumented:
                del search._run_search  # the class's own method again
        if instrumented:  # settle what the estimate missed (halving may stop early) before the next family
            self.total += (self.done - start) - (planned - 1)
        else:
            self.done = start + planned - 1
        self.done += 1
        self.report(f"{name}: done")

    def _on_slice(self, name: str, search: Any) -> Callable[[int, int, int, int | None], None]:
        rounds = _halving_rounds(_candidates(search) or 1, float(search.factor)) if _is_halving(search) else []

        def on_slice(fits: int, done: int, of: int, iteration: int | None) -> None:
            self.done += fits
            where = ""
            if iteration is not None:
                where = f"iteration {iteration + 1} of {max(len(rounds), iteration + 1)}, "
            label = f"{name}: {where}{done} of {of} candidates × {self.folds} folds"
            if done == of and (iteration is None or iteration + 1 >= len(rounds)):
                label = f"{name}: refitting the best setting on the training part"
            self.report(label)

        return on_slice


def _instrument(search: Any, on_slice: Callable[[int, int, int, int | None], None]) -> bool:
    """Hand the search its candidates in slices, calling ``on_slice`` after each one."""
    original = search._run_search
    try:
        takes_context = "callback_ctx" in inspect.signature(original).parameters
    except (TypeError, ValueError):
        return False
    n_jobs = getattr(search, "n_jobs", None)

    def sliced(evaluate_candidates: Callable[..., Any]) -> Callable[..., Any]:
        from joblib import effective_n_jobs

        workers = max(1, effective_n_jobs(n_jobs))

        def evaluate(candidate_params: Any, cv: Any = None, more_results: dict[str, Any] | None = None,
                     **kwargs: Any) -> Any:
            todo = list(candidate_params)
            if not todo:
                return evaluate_candidates(todo, cv, more_results, **kwargs)
            iteration = int(more_results["iter"][0]) if more_results and more_results.get("iter") else None
            step = max(workers, math.ceil(len(todo) / SLICES_PER_BATCH))
            if step < len(todo) and "callback_ctx" in kwargs:
                # scikit-learn's own callback contexts number a batch's fits from 0 and refuse repeats
                # across slices; no callbacks are set on these searches, so the fits go without one
                kwargs["callback_ctx"] = None
            results = None
            for begin in range(0, len(todo), step):
                part = slice(begin, begin + step)
                extra = None if more_results is None else {k: list(v)[part] for k, v in more_results.items()}
                results = evaluate_candidates(todo[part], cv, extra, **kwargs)
                fits = len(todo[part]) * max(1, int(getattr(search, "n_splits_", 1)))
                on_slice(fits, min(begin + step, len(todo)), len(todo), iteration)
            return results

        return evaluate

    if takes_context:
        def run_search(evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None) -> Any:
            return original(sliced(evaluate_candidates), callback_ctx=callback_ctx)
    else:
        def run_search(evaluate_candidates: Callable[..., Any]) -> Any:  # type: ignore[misc]
            return original(sliced(evaluate_candidates))
    search._run_search = _LocalOnly(run_search)
    return True


def _dropped() -> None:
    return None


class _LocalOnly:
    """The sliced ``_run_search``, which stays in this process.

    scikit-learn sends the search itself to the workers with each fit (``caller=``); this
    wrapper pickles as nothing (the workers never search), so the run and its plugin manager
    behind the progress callback never have to be pickled.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__signature__ = inspect.signature(func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _dropped, ()
