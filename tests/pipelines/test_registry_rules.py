import pandas as pd

from pipelines.datasets import split_users
from pipelines.registry_rules import blocked_reason, shared_users, training_users
from revenue_model.synthetic import generate_users


def test_a_rolled_back_or_refused_version_is_blocked_and_others_are_not():
    assert "rolled back at 2026-11-27" in blocked_reason({"rolled_back_at": "2026-11-27T10:00:00+00:00"})
    assert "refused" in blocked_reason({"promotion_refused": "{}", "test_normalized_gini": "0.8"})
    assert blocked_reason({"promoted_at": "2026-11-27", "restored_at": "x"}) is None
    # shadow evidence judges a refused challenger again; a rollback still blocks
    assert blocked_reason({"promotion_refused": "{}"}, refused_too=False) is None
    assert "rolled back" in blocked_reason({"rolled_back_at": "2026-11-27"}, refused_too=False)


def test_shared_users_counts_by_user_id_or_else_by_identical_rows():
    users = generate_users(300, seed=5)
    holdout = pd.concat([users.iloc[:7], generate_users(50, seed=6)], ignore_index=True)
    assert shared_users(holdout, users.iloc[:100]) == 7
    assert shared_users(generate_users(50, seed=6), users) == 0
    assert shared_users(holdout.drop(columns=["user_id"]), users.drop(columns=["user_id"])) == 7


def test_training_users_rebuilds_the_train_and_dev_splits_of_a_run(tmp_path):
    users = generate_users(200, seed=9)
    path = tmp_path / "users.csv"
    users.to_csv(path, index=False)
    rebuilt = training_users({"data_path": str(path), "rows": "60000", "seed": "4"})
    train, dev, test = split_users(users, 4)
    assert sorted(rebuilt["user_id"]) == sorted([*train["user_id"], *dev["user_id"]])
    assert set(rebuilt["user_id"]).isdisjoint(test["user_id"])
    assert training_users({"data_path": str(tmp_path / "gone.csv"), "seed": "4"}) is None
