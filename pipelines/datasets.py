"""Reading data sets and splitting them into train, dev and test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from revenue_model.contract import INSTALL_DATE
from revenue_model.synthetic import generate_users

SPLIT_SHARES = (0.70, 0.15, 0.15)


def read_users(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file with the contract's columns (and revenue, for training)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".gz", ".txt"):
        # Strings stay strings: a region called "NA" or an os_version of "10" is not a number.
        strings = {c: "str" for c in ("country", "country_region", "source", "platform",
                                      "device_family", "os_version", "user_id")}
        return pd.read_csv(path, dtype=strings, keep_default_na=False, na_values=[""])
    raise ValueError(f"{path}: expected a .csv or .parquet file")


def write_users(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def load_or_generate(data_path: str, rows: int, seed: int) -> pd.DataFrame:
    return read_users(data_path) if data_path else generate_users(rows, seed)


def split_users(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """70/15/15 train/dev/test: by install date when the data has one (oldest first), else at random."""
    n = len(frame)
    if INSTALL_DATE in frame.columns and frame[INSTALL_DATE].notna().all():
        order = np.argsort(pd.to_datetime(frame[INSTALL_DATE]).to_numpy(), kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(n)
    a = int(round(n * SPLIT_SHARES[0]))
    b = a + int(round(n * SPLIT_SHARES[1]))
    parts = (order[:a], order[a:b], order[b:])
    return tuple(frame.iloc[p].reset_index(drop=True) for p in parts)
