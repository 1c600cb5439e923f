"""The logged pyfunc: signature, and a round trip through a real tracking store and a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from revenue_model.contract import INPUT_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS
from revenue_model.pyfunc_model import model_signature

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


def test_signature_types_events_as_doubles_and_marks_required_columns():
    inputs = {c.name: c for c in model_signature().inputs.inputs}
    assert list(inputs) == list(INPUT_COLUMNS)
    assert {inputs[c].type.name for c in ("event_1", "event_2", "event_3")} == {"double"}
    assert {name for name, c in inputs.items() if c.required} == set(REQUIRED_COLUMNS)
    assert [c.name for c in model_signature().outputs.inputs] == list(OUTPUT_COLUMNS)


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
