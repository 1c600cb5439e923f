"""batch_score against the pyfunc in this process, row by row: real spawn-started scoring processes,
real files (CSV, Parquet, a folder of Parquet files), a real local Spark for engine=spark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import psycopg2
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from mlflow.models import Model

from pipelines import batch_io, batch_score
from pipelines.batch_io import BatchInputError, ModelColumns
from pipelines.score_worker import ScoringError, ScoringPool, check_own_code
from revenue_model.synthetic import generate_users

PROJECT = Path(__file__).resolve().parents[2]
OUTPUTS = ["predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90"]
MODEL_INPUTS = ["country", "country_region", "source", "platform", "device_family", "os_version",
                "event_1", "event_2", "event_3", "user_id"]


@pytest.fixture(scope="module")
def tracking(champion_store):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", champion_store)
        yield champion_store


@pytest.fixture(scope="module")
def champion_version(tracking):
    return str(MlflowClient(tracking).get_model_version_by_alias("revenue_model", "champion").version)


@pytest.fixture(scope="module")
def installs():
    """2,500 seeded installs, with the values a careless reader would mangle."""
    frame = generate_users(2500, seed=11)
    frame.loc[3, "os_version"] = "10"             # a number-looking string stays a string
    frame.loc[4, "country_region"] = "NA"         # a region, not a missing value
    frame.loc[5, "device_family"] = "null"
    frame.loc[6, "event_3"] = np.nan
    return frame


@pytest.fixture(scope="module")
def expected(tracking, installs):
    """The pyfunc's own outputs in this process, on the whole frame at once."""
    model = mlflow.pyfunc.load_model("models:/revenue_model@champion")
    out = model.predict(installs[MODEL_INPUTS].astype({"event_1": float, "event_2": float}))
    return pd.DataFrame(out)[OUTPUTS].reset_index(drop=True)


@pytest.fixture(scope="module")
def model_dir(tracking, tmp_path_factory):
    return Path(mlflow.artifacts.download_artifacts("models:/revenue_model@champion",
                                                    dst_path=str(tmp_path_factory.mktemp("model"))))


@pytest.fixture(scope="module")
def run_local(model_dir, champion_version):
    """score_local with one scoring process shared by the tests (each start loads the model)."""
    model = ModelColumns.from_model(Model.load(str(model_dir / "MLmodel")))
    with ScoringPool(model_dir, workers=1, threads=1) as pool:
        def run(input_path, output_path, chunk_rows=1000):
            return batch_score.score_local(input_path, output_path, pool, model, champion_version,
                                           chunk_rows=chunk_rows)
        yield run


def assert_outputs_equal(scored: pd.DataFrame, expected: pd.DataFrame):
    for column in OUTPUTS:
        np.testing.assert_array_equal(scored[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


def test_local_scores_in_chunks_row_by_row_as_the_pyfunc_does(installs, expected, champion_version,
                                                               tmp_path):
    source = tmp_path / "installs.parquet"
    installs.to_parquet(source, index=False)
    result = batch_score.batch_score(source, tmp_path / "scored.parquet", engine="local",
                                     chunk_rows=700, workers=2)  # 4 chunks over 2 processes
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert result.rows == len(installs) == len(scored)
    assert result.model_version == champion_version
    assert list(scored.columns) == list(installs.columns) + OUTPUTS + ["model_version"]
    # Every input column as it was, in input order.
    pd.testing.assert_frame_equal(scored[list(installs.columns)], installs)
    assert_outputs_equal(scored, expected)
    assert set(scored["model_version"]) == {champion_version}
    assert (tmp_path / "scored.parquet").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_csv_is_read_with_the_models_types(run_local, installs, expected, tmp_path):
    source = tmp_path / "installs.csv"
    installs.to_csv(source, index=False)
    run_local(source, tmp_path / "scored.parquet")
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert_outputs_equal(scored, expected)
    assert scored.loc[3, "os_version"] == "10" and scored.loc[4, "country_region"] == "NA"
    assert scored.loc[5, "device_family"] == "null"
    # Columns the model does not read are passed through as the text the CSV holds.
    assert scored["revenue"].tolist() == pd.read_csv(source, dtype=str, keep_default_na=False)[
        "revenue"].tolist()


def test_whole_numbers_in_a_parquet_file_score_as_decimals(run_local, installs, expected, tmp_path):
    source = tmp_path / "installs.parquet"
    installs.astype({"event_1": "int64", "event_2": "int64"}).to_parquet(source, index=False)
    run_local(source, tmp_path / "scored.parquet")
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["event_1"].dtype == np.int64  # passed through as it was
    assert_outputs_equal(scored, expected)


def test_a_folder_of_parquet_files_is_read_in_path_order(run_local, installs, expected, tmp_path):
    folder = tmp_path / "day"
    cuts = [(0, 900, "date=2026-10-01"), (900, 2000, "date=2026-10-01"), (2000, 2500, "date=2026-10-02")]
    for k, (a, b, key) in enumerate(cuts):
        (folder / key).mkdir(parents=True, exist_ok=True)
        part = installs.iloc[a:b]
        if k == 1:  # whole numbers in one file and decimals in the others
            part = part.astype({"event_2": "int64"})
        part.to_parquet(folder / key / f"part-{k:05d}.parquet", index=False)
    (folder / "_SUCCESS").touch()  # Spark's marker is not data
    rows = run_local(folder, tmp_path / "scored.parquet", chunk_rows=600)
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert rows == len(installs)
    assert scored["user_id"].tolist() == installs["user_id"].tolist()
    assert scored["date"].tolist() == ["2026-10-01"] * 2000 + ["2026-10-02"] * 500
    assert_outputs_equal(scored, expected)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_an_empty_input_gives_an_empty_output_with_every_column(run_local, installs, tmp_path, kind):
    source = tmp_path / f"empty.{kind}"
    empty = installs.iloc[:0]
    empty.to_parquet(source, index=False) if kind == "parquet" else empty.to_csv(source, index=False)
    rows = run_local(source, tmp_path / "scored.parquet")
    table = pq.read_table(tmp_path / "scored.parquet")
    assert rows == 0 and table.num_rows == 0
    assert table.column_names == list(installs.columns) + OUTPUTS + ["model_version"]


def test_a_missing_required_column_is_named_and_nothing_is_written(installs, tmp_path):
    source = tmp_path / "installs.parquet"
    installs.drop(columns=["platform"]).to_parquet(source, index=False)
    with pytest.raises(BatchInputError, match="the input has no platform column"):
        batch_score.batch_score(source, tmp_path / "scored.parquet")
    assert not any(tmp_path.glob("scored*")) and not any(tmp_path.glob(".scored*"))


def test_a_bad_value_is_named_by_its_row_in_the_whole_input(run_local, installs, tmp_path):
    source = tmp_path / "installs.parquet"
    bad = installs.copy()
    bad.loc[1234, "event_1"] = -3.0
    bad.to_parquet(source, index=False)
    with pytest.raises(ScoringError, match=r"row 1234: event_1 must be >= 0"):
        run_local(source, tmp_path / "scored.parquet", chunk_rows=500)  # row 234 of the third chunk
    assert not any(tmp_path.glob("scored*")) and not any(tmp_path.glob(".scored*"))


@pytest.mark.parametrize("bad_row", [5, 3000])  # in the first block read, and in a later one
def test_a_number_a_csv_cannot_hold_is_named_by_its_column(run_local, tmp_path, bad_row, monkeypatch):
    monkeypatch.setattr(batch_io, "_CSV_BLOCK_BYTES", 4096)  # about 200 rows a block
    source = tmp_path / "installs.csv"
    row = "pe,Organic,ios,3,1\n"
    source.write_text("country,source,platform,event_1,event_2\n" + row * bad_row
                      + "pe,Organic,ios,many,1\n" + row * 10)
    with pytest.raises(BatchInputError, match=r"column event_1: .*invalid value 'many'"):
        run_local(source, tmp_path / "scored.parquet")
    assert not any(tmp_path.glob("scored*")) and not any(tmp_path.glob(".scored*"))


def test_the_cli_logs_a_failed_run_with_the_reason(installs, tracking, tmp_path, capsys):
    source = tmp_path / "installs.csv"
    installs.drop(columns=["country", "event_2"]).to_csv(source, index=False)
    with pytest.raises(SystemExit) as stopped:
        batch_score.main(["--input-path", str(source), "--output-path", str(tmp_path / "out.parquet")])
    assert str(stopped.value.code).startswith("batch_score: the input has no country, event_2 column")
    run = mlflow.last_active_run()
    assert run.info.status == "FAILED" and run.data.params["input_path"] == str(source)


def test_log_true_writes_every_scored_user_to_the_prediction_log(installs, expected, champion_version,
                                                                 fresh_database, tmp_path, monkeypatch):
    source, out = tmp_path / "installs.parquet", tmp_path / "scored.parquet"
    sent = installs.head(1200).copy()
    sent.loc[7, "user_id"] = f"  {sent.loc[7, 'user_id']} "  # the log types it as the service does: stripped
    sent.loc[8, "country"] = f" {sent.loc[8, 'country']}"
    sent.to_parquet(source, index=False)
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    batch_score.main(["--input-path", str(source), "--output-path", str(out), "--log", "true", "--workers", "1"])
    run = mlflow.last_active_run()
    connection = psycopg2.connect(fresh_database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_index, request_id, route, status_code, model_version, user_id, country, "
                       "event_3, predicted_revenue, input_data FROM predictions ORDER BY user_index")
        rows = cursor.fetchall()
    connection.close()
    assert len(rows) == 1200 and [r[0] for r in rows] == list(range(1200))
    assert {(r[1], r[2], r[3], r[4]) for r in rows} == {(run.info.run_id, "batch_score", 200, champion_version)}
    original = installs.head(1200)
    assert [r[5] for r in rows] == list(original["user_id"])
    assert [r[6] for r in rows] == list(original["country"])
    assert [rows[7][9]["user_id"], rows[8][9]["country"]] == [sent.loc[7, "user_id"], sent.loc[8, "country"]]
    assert rows[6][7] is None and rows[6][9]["event_3"] is None  # missing (Parquet holds it as null)
    assert rows[4][9]["country_region"] == "NA" and rows[3][9]["os_version"] == "10"
    np.testing.assert_allclose([r[8] for r in rows], expected["predicted_revenue"].head(1200), rtol=1e-12)
    assert run.data.metrics["logged_rows"] == 1200


def test_a_process_that_imported_the_package_first_is_refused(model_dir):
    """This process imported revenue_model from the project, not from the model: scoring here
    would not run the model's own code (the spawn-started workers above pass the same check)."""
    with pytest.raises(RuntimeError, match="not from the model's bundled code"):
        check_own_code(model_dir)


@pytest.mark.parametrize("sizes, rows, expected", [
    ([3, 0, 5, 1], 4, [4, 4, 1]),
    ([10], 4, [4, 4, 2]),
    ([2, 2], 4, [4]),
    ([], 4, []),
    ([1, 1, 1], 1, [1, 1, 1]),
])
def test_rebatch_cuts_exact_chunks_and_keeps_order(sizes, rows, expected):
    batches, start = [], 0
    for size in sizes:
        batches.append(pa.record_batch({"i": list(range(start, start + size))}))
        start += size
    out = list(batch_io.rebatch(batches, rows))
    assert [b.num_rows for b in out] == expected
    assert [v for b in out for v in b.column("i").to_pylist()] == list(range(start))


def test_a_folder_with_a_file_that_is_not_parquet_is_refused_by_name(run_local, installs, tmp_path):
    folder = tmp_path / "day"
    folder.mkdir()
    installs.to_parquet(folder / "part-00000.parquet", index=False)
    (folder / "notes.txt").write_text("not data")
    with pytest.raises(BatchInputError, match="notes.txt"):
        run_local(folder, tmp_path / "scored.parquet")


def test_an_output_column_in_the_input_is_refused(run_local, installs, tmp_path):
    source = tmp_path / "installs.parquet"
    installs.assign(model_version="x").to_parquet(source, index=False)
    with pytest.raises(BatchInputError, match="already has a model_version column"):
        run_local(source, tmp_path / "scored.parquet")


# -- the MLproject entry point and the spark engine: real subprocesses ----------------------------

def mlflow_run(tracking_uri: str, cwd: Path, **params) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # --env-manager local runs this python
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", "batch_score",
               "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def finished_run(tracking_uri: str, output_path: Path):
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(["0"], f"params.output_path = '{output_path}'")
    assert len(runs) == 1
    return runs[0]


@pytest.mark.slow
def test_the_entry_point_scores_and_logs_the_run(installs, expected, tracking, champion_version,
                                                 tmp_path):
    source = tmp_path / "installs.parquet"
    installs.to_parquet(source, index=False)
    output = tmp_path / "scored.parquet"
    result = mlflow_run(tracking, tmp_path, input_path=source, output_path=output)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert_outputs_equal(pd.read_parquet(output), expected)
    run = finished_run(tracking, output)
    assert run.info.status == "FINISHED"
    assert run.data.params["engine"] == "local" and run.data.params["input_path"] == str(source)
    assert run.data.params["model_uri"] == "models:/revenue_model@champion"
    assert run.data.params["model_version"] == champion_version
    assert run.data.params["scored_model_uri"] == f"models:/revenue_model/{champion_version}"
    assert run.data.metrics["rows"] == len(installs)
    assert 0 < run.data.metrics["users_per_s"] == pytest.approx(len(installs) / run.data.metrics["seconds"])


@pytest.mark.slow
def test_spark_gives_the_same_numbers_as_local(installs, expected, tracking, champion_version,
                                              tmp_path):
    """A real local Spark (pyspark from the `spark` extra, Java 17), one session for both files."""
    source = tmp_path / "installs.parquet"
    installs.to_parquet(source, index=False)
    csv = tmp_path / "installs.csv"
    installs.to_csv(csv, index=False)
    for given, output in ((source, tmp_path / "spark-parquet"), (csv, tmp_path / "spark-csv")):
        result = batch_score.batch_score(given, output, engine="spark")
        scored = pd.read_parquet(output)
        assert result.rows == len(scored) == len(installs)
        assert list(scored.columns) == list(installs.columns) + OUTPUTS + ["model_version"]
        # Spark keeps no row order: match rows by user_id (unique here).
        scored = scored.set_index("user_id").loc[installs["user_id"]].reset_index()
        assert_outputs_equal(scored, expected)
        assert set(scored["model_version"]) == {champion_version}
        assert scored.loc[3, "os_version"] == "10" and scored.loc[4, "country_region"] == "NA"
    # Input columns pass through: install_date to the microsecond, which whole days are.
    from_parquet = pd.read_parquet(tmp_path / "spark-parquet").set_index("user_id").loc[installs["user_id"]]
    assert (from_parquet["install_date"].to_numpy() == installs["install_date"].to_numpy()).all()
