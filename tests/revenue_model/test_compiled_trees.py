"""Compiled trees: a logged model carries them, loads them, and they give LightGBM's numbers to the
bit; trees that are not the model's own, or were built elsewhere, are never used."""

import json
import logging
import shutil

import lightgbm as lgb
import mlflow
import numpy as np
import pytest

from revenue_model import compiled_trees
from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.predictor import BOOSTERS
from revenue_model.validation import validate_columns
from revenue_model.ziln import predict_ziln


@pytest.fixture(scope="module")
def logged(champion_store):
    """The session's champion as loaded by MLflow, and its local folder."""
    mlflow.set_tracking_uri(champion_store)
    try:
        path = mlflow.artifacts.download_artifacts("models:/revenue_model@champion")
    finally:
        mlflow.set_tracking_uri(None)
    return mlflow.pyfunc.load_model(path), path


def artifacts(path):
    root = f"{path}/artifacts"
    return {name: f"{root}/{name}.txt" for name in BOOSTERS}, f"{root}/{compiled_trees.ARTIFACT}"


def test_a_logged_model_scores_with_compiled_trees_giving_lightgbms_numbers_to_the_bit(logged, predictor, holdout):
    model, _ = logged
    ziln = model.unwrap_python_model().predictor.ziln
    assert ziln.compiled is not None and set(ziln.compiled) == set(BOOSTERS)
    users = holdout.drop(columns=["revenue"])
    X = predictor.plan.transform(validate_columns(users))
    for name in BOOSTERS:  # LightGBM's own Python API, not the code under test
        booster = lgb.Booster(model_str=getattr(predictor.ziln, name).model_to_string())
        expected = booster.predict(X, raw_score=name == "mean_correction", num_threads=1)
        got = compiled_trees.predict(ziln.compiled[name], X, num_threads=2)
        assert np.array_equal(got, expected), name
    served = model.predict(users)
    assert np.array_equal(served[list(OUTPUT_COLUMNS)].to_numpy(), predictor.predict(users).to_numpy())


@pytest.mark.parametrize("damage", ["other trees", "damaged object", "other lleaves", "other triple"])
def test_compiled_trees_that_are_not_the_models_or_not_built_here_are_not_used(logged, tmp_path, damage, caplog):
    texts, directory = artifacts(logged[1])
    copy = tmp_path / "compiled"
    shutil.copytree(directory, copy)
    manifest = json.loads((copy / compiled_trees.MANIFEST).read_text())
    if damage == "other trees":
        texts["payer"] = texts["log_mean"]
    elif damage == "damaged object":
        data = bytearray((copy / "payer.o").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (copy / "payer.o").write_bytes(bytes(data))
    elif damage == "other lleaves":
        manifest["lleaves"] = "0.0.1"
    else:
        manifest["triple"] = "aarch64-unknown-linux-gnu"
    (copy / compiled_trees.MANIFEST).write_text(json.dumps(manifest))
    assert compiled_trees.load_compiled(texts, tmp_path / "compiled-nowhere") is None
    with caplog.at_level(logging.WARNING):
        assert compiled_trees.load_compiled(texts, copy) is None
    assert "scoring with LightGBM" in caplog.text
    assert set(compiled_trees.load_compiled(*artifacts(logged[1]))) == set(BOOSTERS)  # the untouched copy loads


def test_compiled_trees_that_disagree_with_lightgbm_are_dropped_and_the_call_answered_by_lightgbm(
        logged, predictor, holdout, caplog):
    texts, directory = artifacts(logged[1])
    swapped = compiled_trees.load_compiled(texts, directory)
    swapped["payer"], swapped["log_mean"] = swapped["log_mean"], swapped["payer"]
    model = logged[0].unwrap_python_model().predictor.ziln
    X = predictor.plan.transform(validate_columns(holdout.drop(columns=["revenue"])))
    expected = predict_ziln(predictor.ziln, X)  # the session's predictor: never compiled
    assert predictor.ziln.compiled is None
    own = model.compiled
    try:
        model.compiled = swapped
        with caplog.at_level(logging.ERROR):
            got = predict_ziln(model, X)
        assert model.compiled is None
        assert "scoring with LightGBM from now on" in caplog.text
        for column in OUTPUT_COLUMNS:
            assert np.array_equal(got[column], expected[column]), column
    finally:
        model.compiled = own


def test_the_compiled_trees_use_no_instruction_beyond_the_baseline_of_their_architecture(logged):
    """Built with the logging host's features (AVX-512 here), an object kills a process on a CPU
    without them (SIGILL, before any check can run): the objects must be baseline x86-64 code."""
    import platform
    import re
    import subprocess

    assert platform.machine() == "x86_64"  # this test reads x86 assembly
    _, directory = artifacts(logged[1])
    for name in BOOSTERS:
        listing = subprocess.run(["objdump", "-d", f"{directory}/{name}.o"], capture_output=True, text=True,
                                 check=True).stdout
        instructions = [line for line in listing.splitlines() if re.match(r"\s+[0-9a-f]+:\t", line)]
        assert len(instructions) > 100, name
        beyond = [line for line in instructions if re.search(r"%[xyz]mm(1[6-9]|2\d|3[01])|%[yz]mm|%k[0-7]|\tv[a-z]", line)]
        assert not beyond, (name, beyond[:3])
