import pandas as pd

from pipelines.datasets import read_users, split_users, write_users
from revenue_model.synthetic import generate_users


def test_split_by_install_date_puts_the_newest_users_in_test():
    users = generate_users(1000, seed=5)
    train, dev, test = split_users(users, seed=0)
    assert (len(train), len(dev), len(test)) == (700, 150, 150)
    assert train["install_date"].max() <= dev["install_date"].min()
    assert dev["install_date"].max() <= test["install_date"].min()


def test_split_without_dates_is_random_and_complete():
    users = generate_users(1000, seed=5, with_install_date=False)
    parts = split_users(users, seed=0)
    ids = pd.concat([p["user_id"] for p in parts])
    assert sorted(ids) == sorted(users["user_id"]) and ids.is_unique
    assert not parts[0]["user_id"].equals(users["user_id"].iloc[:700].reset_index(drop=True))


def test_csv_keeps_strings_as_strings(tmp_path):
    users = generate_users(50, seed=5)
    users.loc[0, "country_region"] = "NA"  # a real region name, not a missing value
    users.loc[1, "os_version"] = "10"
    back = read_users(write_users(users, tmp_path / "u.csv"))
    assert back.loc[0, "country_region"] == "NA" and back.loc[1, "os_version"] == "10"
    assert read_users(write_users(users, tmp_path / "u.parquet")).shape == users.shape
