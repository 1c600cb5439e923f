"""Rules the registry keeps between promotions and rollbacks (pipelines/promote.py applies them).

- A version tagged ``rolled_back_at`` or ``promotion_refused`` is not promoted again unless the
  person says so (``-P force=true``): a rollback is not undone by the next scheduled promote. With
  ``evidence=shadow`` an earlier refusal does not block: the live evidence grows with every label.
- A holdout that shares users with the challenger's training or dev split measures memory, not
  skill: it is refused. The default holdout (the challenger's own test split) is disjoint by
  construction; a ``data_path`` is checked against the training run's data, rebuilt from its
  parameters (data_path, rows, seed) exactly as pipelines/train.py split it.
"""

from __future__ import annotations

import os

import pandas as pd

from pipelines.candidates import clean_frame
from pipelines.datasets import load_or_generate, split_users
from revenue_model.contract import FEATURE_INPUTS, TARGET

BLOCKING_TAGS = {"rolled_back_at": "was rolled back at {}", "promotion_refused": "was refused before"}


def blocked_reason(tags: dict, *, refused_too: bool = True) -> str | None:
    """Why a version with these tags is not promoted without force; None when nothing blocks it.
    ``refused_too=False``: an earlier refusal does not block (shadow evidence grows with every label,
    so a challenger refused on it is judged again)."""
    for tag, text in BLOCKING_TAGS.items():
        if tag in tags and (refused_too or tag != "promotion_refused"):
            return text.format(tags[tag][:40])
    return None


def shared_users(holdout: pd.DataFrame, training: pd.DataFrame) -> int:
    """Holdout rows that are also in ``training``: by user_id when both frames have one for every
    row, else by the row's inputs and revenue (identical rows)."""
    if "user_id" in holdout and "user_id" in training and holdout["user_id"].notna().all() \
            and training["user_id"].notna().all():
        return int(holdout["user_id"].astype(str).isin(set(training["user_id"].astype(str))).sum())
    columns = [c for c in (*FEATURE_INPUTS, TARGET) if c in holdout and c in training]
    keys = pd.util.hash_pandas_object(training[columns].astype(str), index=False)
    return int(pd.util.hash_pandas_object(holdout[columns].astype(str), index=False).isin(set(keys)).sum())


def training_users(params: dict) -> pd.DataFrame | None:
    """The train and dev splits of a training run, from its logged parameters; None when its data
    file is gone (an export in a temporary folder, say)."""
    data_path = params.get("data_path") or ""
    if data_path and not os.path.exists(data_path):
        return None
    seed = int(params.get("seed", 0))
    frame = clean_frame(load_or_generate(data_path, int(params.get("rows", 0) or 0), seed))
    train, dev, _ = split_users(frame, seed)
    return pd.concat([train, dev], ignore_index=True)
