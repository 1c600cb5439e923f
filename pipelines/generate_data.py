"""Write a synthetic data set with the contract's columns and revenue.

    mlflow run . -e generate_data --env-manager local -P rows=100000 -P output=data/users.parquet
"""

from __future__ import annotations

import argparse

from pipelines.datasets import write_users
from revenue_model.synthetic import generate_users


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="data/users.parquet", help=".parquet or .csv")
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    path = write_users(generate_users(args.rows, args.seed), args.output)
    print(f"wrote {args.rows} users to {path}")
    return str(path)


if __name__ == "__main__":
    main()
