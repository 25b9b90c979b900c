"""Re-create examples/travel_mode_choice/data/travel_mode_choice.csv (offline).

Source: the `modechoice` data set bundled with statsmodels
(statsmodels/datasets/modechoice/modechoice.csv; no download involved).

    python -m pip install statsmodels==0.15.0
    python examples/travel_mode_choice/make_dataset.py

or, without installing, from the wheel:

    python -m pip download --no-deps -d /tmp/whl statsmodels==0.15.0
    python examples/travel_mode_choice/make_dataset.py /tmp/whl/statsmodels-0.15.0-*.whl
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

MEMBER = "statsmodels/datasets/modechoice/modechoice.csv"
MODES = {1: "air", 2: "train", 3: "bus", 4: "car"}


def read_raw(wheel: str | None) -> str:
    if wheel:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(MEMBER).decode("utf-8")
    import statsmodels.datasets.modechoice as m  # bundled file, no network
    return (Path(m.__file__).parent / "modechoice.csv").read_text()


def main(wheel: str | None) -> None:
    df = pd.read_csv(io.StringIO(read_raw(wheel)), sep=";")
    assert df.shape == (840, 9), df.shape
    df = df.rename(columns={
        "individual": "query_id", "choice": "chosen",
        "ttme": "terminal_wait_min", "invc": "in_vehicle_cost", "invt": "in_vehicle_time_min",
        "gc": "generalized_cost", "hinc": "household_income_k", "psize": "party_size",
    })
    df["mode"] = df["mode"].map(MODES)
    assert (df.groupby("query_id")["chosen"].sum() == 1).all()  # exactly one chosen alternative per query
    assert (df.groupby("query_id").size() == 4).all()
    df = df.sort_values(["query_id", "mode"], key=lambda s: s.map({v: k for k, v in MODES.items()}) if s.name == "mode" else s)
    out = Path(__file__).resolve().parent / "data" / "travel_mode_choice.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out}: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
