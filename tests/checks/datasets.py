"""Real example data with and without planted defects, written next to a spec.

Every builder is deterministic (fixed seeds) and small (a few thousand rows), so each
``assay run`` on it takes seconds.

The Adult sample is *preferentially sampled* (Kamiran & Calders, 2012): as many women as
men, with women's incomes above $50K over-represented (30 % against 24 % for men). On
the raw data, a model selects women at about a third of the rate of men — a real
four-fifths failure that would hide the planted one; on this sample, the untouched model
selects both at similar rates, so a bias planted in training shows up alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import EXAMPLES

ADULT_CSV = EXAMPLES / "adult" / "data" / "adult.csv"
FLIGHTS_CSV = EXAMPLES / "nyc_flights_2013" / "data" / "flights.csv"


def adult_fair(n: int = 4000) -> pd.DataFrame:
    frame = pd.read_csv(ADULT_CSV, skipinitialspace=True)
    frame["income"] = frame["income"].str.rstrip(".")
    parts = []
    for sex, rate in (("Female", 0.30), ("Male", 0.24)):
        people = frame[frame["sex"] == sex]
        k = n // 2
        positives = int(k * rate)
        parts += [people[people["income"] == ">50K"].sample(positives, random_state=1),
                  people[people["income"] == "<=50K"].sample(k - positives, random_state=1)]
    return pd.concat(parts).sample(frac=1.0, random_state=2).reset_index(drop=True)


def with_target_copy(frame: pd.DataFrame) -> pd.DataFrame:
    """The label, recoded as 0/1, slipped in as a feature."""
    out = frame.copy()
    out["high_earner_flag"] = (out["income"] == ">50K").astype(int)
    return out


def with_duplicates(frame: pd.DataFrame, share: float = 0.10) -> pd.DataFrame:
    """``share`` of the rows appended again (a double load), then shuffled."""
    copies = frame.sample(frac=share, random_state=3)
    return pd.concat([frame, copies]).sample(frac=1.0, random_state=4).reset_index(drop=True)


def with_entities(frame: pd.DataFrame, people: int = 1300, waves: int = 3) -> pd.DataFrame:
    """Each of ``people`` respondents surveyed in ``waves`` consecutive years (``person_id``)."""
    chosen = frame.sample(people, random_state=5).reset_index(drop=True)
    rounds = []
    for wave in range(waves):
        r = chosen.copy()
        r.insert(0, "person_id", [f"P{i:05d}" for i in range(people)])
        r["age"] = r["age"] + wave
        rounds.append(r)
    return pd.concat(rounds).sample(frac=1.0, random_state=6).reset_index(drop=True)


def with_biased_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Every woman's high income recorded as low: a model trained on it learns to pass women over."""
    out = frame.copy()
    out.loc[out["sex"] == "Female", "income"] = "<=50K"
    return out


def flights(n: int = 4000) -> pd.DataFrame:
    """A random sample of the 2013 NYC flights, still in scheduled-departure order."""
    frame = pd.read_csv(FLIGHTS_CSV)
    return frame.sample(n, random_state=7).sort_values("scheduled_departure", kind="stable").reset_index(drop=True)


ADULT_SPEC = """\
[project]
name = "{name}"

[data]
source = "data.csv"
target = "income"
task = "binary"
sensitive = ["sex"]
drop = ["fnlwgt", "split"]
{extra_data}
[split]
strategy = "{strategy}"
test_size = 0.25
cv_folds = 3
seed = 42

[train]
candidates = ["logistic_regression"]
tuning = "none"
n_jobs = 1

[gate]
policy = "assay:standard"
"""

FLIGHTS_SPEC = """\
[project]
name = "{name}"

[data]
source = "data.csv"
target = "is_delayed"
task = "binary"
time_column = "scheduled_departure"
drop = ["arr_delay_min", "dep_delay_min", "flight_number", "tailnum"]

[split]
strategy = "{strategy}"
test_size = 0.25
cv_folds = 3
seed = 42

[train]
candidates = ["logistic_regression"]
tuning = "none"
n_jobs = 1

[gate]
policy = "assay:standard"
"""


def write(directory: Path, frame: pd.DataFrame, spec: str) -> Path:
    """Write ``data.csv`` and ``assay.toml`` into ``directory``; return the spec path."""
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_csv(directory / "data.csv", index=False)
    path = directory / "assay.toml"
    path.write_text(spec, encoding="utf-8")
    return path


def adult_spec(name: str, strategy: str = "stratified", extra_data: str = "") -> str:
    return ADULT_SPEC.format(name=name, strategy=strategy, extra_data=extra_data)


def flights_spec(name: str, strategy: str) -> str:
    return FLIGHTS_SPEC.format(name=name, strategy=strategy)
