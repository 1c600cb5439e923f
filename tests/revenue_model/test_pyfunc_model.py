"""The logged pyfunc: signature, and a round trip through a real tracking store and a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
from mlflow.models import Model

from revenue_model.contract import INPUT_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS

LOAD_AND_PREDICT = textwrap.dedent("""
    import json, sys
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    users = pd.read_json(sys.argv[2], orient="split", dtype={"event_1": float, "event_2": float, "event_3": float})
    out = model.predict(users)
    import revenue_model.predictor as predictor_module
    print(json.dumps({"columns": list(out.columns), "values": out.to_numpy().tolist(),
                      "package": predictor_module.__file__}))
""")


def test_the_logged_model_describes_its_inputs_in_metadata_and_enforces_no_input_schema(champion_store):
    client = mlflow.MlflowClient(champion_store)
    source = client.get_model_version_by_alias("revenue_model", "champion").source
    mlflow.set_tracking_uri(champion_store)
    try:
        meta = Model.load(source)
    finally:
        mlflow.set_tracking_uri(None)
    # No input schema: MLflow would refuse int64 events for a double column (docs/model.md).
    assert meta.signature.inputs is None
    assert [c.name for c in meta.signature.outputs.inputs] == list(OUTPUT_COLUMNS)
    inputs = meta.metadata["inputs"]
    assert [c["name"] for c in inputs] == list(INPUT_COLUMNS)
    assert {c["name"] for c in inputs if c["required"]} == set(REQUIRED_COLUMNS)
    assert {c["name"]: c["type"] for c in inputs if c["type"] == "number"} == dict.fromkeys(
        ("event_1", "event_2", "event_3"), "number")
    assert len(meta.metadata["code_sha256"]) == 64


def test_round_trip_in_a_fresh_process_from_another_directory(champion_store, predictor, holdout, tmp_path):
    tracking_uri, model_uri = champion_store, "models:/revenue_model@champion"
    users = holdout.drop(columns=["revenue", "install_date", "true_payer_probability",
                                  "true_expected_revenue"]).iloc[:200]
    users_file = tmp_path / "users.json"
    users.to_json(users_file, orient="split", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, model_uri, str(users_file)],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["columns"] == list(OUTPUT_COLUMNS)
    # The package came with the model (code_paths), not from this checkout.
    assert "/artifacts/code/revenue_model/" in answer["package"]
    np.testing.assert_allclose(np.array(answer["values"]), predictor.predict(users).to_numpy(), rtol=1e-12)
