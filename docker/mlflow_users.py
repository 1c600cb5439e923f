"""Create (or re-key) the registry's read-only user the API container logs in with.

Run with the admin's credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD and the
reader's in MLFLOW_READER_USERNAME (default "reader") / MLFLOW_READER_PASSWORD; MLFLOW_TRACKING_URI
names the server. The reader is not an admin, so it gets the server's default_permission (READ):
it resolves aliases and downloads models, and cannot register, tag or move an alias.
"""

from __future__ import annotations

import os
import sys

from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client


def main() -> int:
    username = os.environ.get("MLFLOW_READER_USERNAME", "reader")
    password = os.environ.get("MLFLOW_READER_PASSWORD", "")
    if not password:
        print("MLFLOW_READER_PASSWORD is not set", file=sys.stderr)
        return 2
    client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    try:
        client.create_user(username, password)
        print(f"registry user {username!r} created (read only)")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        client.update_user_password(username, password)
        print(f"registry user {username!r} exists; its password is the one given now")
    client.update_user_admin(username, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
