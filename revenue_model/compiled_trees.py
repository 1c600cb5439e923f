"""The boosters' trees compiled to machine code (lleaves, on LLVM), for scoring many users at once.

LightGBM walks its trees as data: about 25 ms of CPU per 1,000 users for this model's four
boosters, the largest single cost of a batch. lleaves turns each tree into code; compiled with
every tree in one cache block (``fblocksize`` = the number of trees) and without inlining, the
trees are summed in LightGBM's order and the outputs are bit-identical to ``Booster.predict``
(tests/revenue_model/test_compiled_trees.py), at about a third of its CPU (docs/model.md). The
inlined, cache-blocked code lleaves makes by default is faster still but sums in another order
(differences of 1e-15) and took 4x longer to compile.

Compiling takes seconds, so it happens once, when the model is logged
(pipelines.model_logging): one object file per booster and a manifest, stored with the model
as the artifact ``compiled_trees``. Loading them takes milliseconds. They are used only where
they were built for: same lleaves, same llvmlite (its LLVM), same target triple, and boosters
whose text hashes as the manifest says; anywhere else, or without lleaves installed, the model
scores with LightGBM (FastBooster): the same numbers, only slower.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ARTIFACT = "compiled_trees"
MANIFEST = "manifest.json"
# A CPU every machine of the triple has, with no feature beyond it: an object built on one x86-64
# host runs on another. (lleaves otherwise adds the building host's features: AVX-512 code here,
# which would kill a process on a CPU without it.)
TARGET_CPU, TARGET_FEATURES = "generic", ""
_FORMAT = 1


def raw_score(name: str) -> bool:
    """The correction is read as a raw score: its log-multiplier, without the offset it was fit on
    (LightGBM's and the compiled trees' reading alike)."""
    return name == "mean_correction"


def _host() -> dict | None:
    """What an object file must have been built with to run here; None without lleaves."""
    try:
        import llvmlite.binding as llvm

        return {"format": _FORMAT, "lleaves": version("lleaves"), "llvmlite": version("llvmlite"),
                "triple": llvm.get_process_triple(), "target_cpu": TARGET_CPU, "target_features": TARGET_FEATURES}
    except Exception:  # noqa: BLE001 - not installed, or its library does not load here: LightGBM
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _options(model, name: str) -> dict:
    # One block of all the trees (at least 1) and no inlining: LightGBM's order of summation.
    return {"raw_score": raw_score(name), "fblocksize": max(model.num_trees(), 1), "finline": False,
            "target_cpu": TARGET_CPU, "target_cpu_features": TARGET_FEATURES}


def compile_boosters(text_paths: dict[str, Path], directory: Path) -> bool:
    """Compile each booster's model file into ``directory`` with a manifest; False (and nothing
    usable written) when lleaves is missing or fails."""
    host = _host()
    if host is None:
        log.warning("lleaves is not installed: the model will score with LightGBM only")
        return False
    import lleaves

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    boosters = {}
    try:
        for name, text_path in text_paths.items():
            model = lleaves.Model(model_file=str(text_path))  # parses the model file
            options = _options(model, name)
            model.compile(cache=str(directory / f"{name}.o"), **options)
            boosters[name] = {"file": f"{name}.o", "sha256": _sha256(text_path),
                              "object_sha256": _sha256(directory / f"{name}.o"), **options}
    except Exception:  # noqa: BLE001 - the model still works without: say so, never fail the training
        log.exception("compiling the trees failed: the model will score with LightGBM only")
        return False
    (directory / MANIFEST).write_text(json.dumps({**host, "boosters": boosters}, indent=1))
    return True


def load_compiled(text_paths: dict[str, Path], directory: Path | None) -> dict | None:
    """{booster name: compiled lleaves model} from ``directory``, or None (logged) when they
    cannot be used here."""
    if directory is None or not (Path(directory) / MANIFEST).is_file():
        return None
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        host = _host()
        if host is None:
            log.warning("the model has compiled trees but lleaves cannot run here: scoring with LightGBM")
            return None
        built = {k: manifest.get(k) for k in host}
        if built != host:
            log.warning("the model's compiled trees were built for %s, this is %s: scoring with LightGBM", built, host)
            return None
        import lleaves

        models = {}
        for name, text_path in text_paths.items():
            entry = manifest["boosters"][name]
            obj = directory / entry["file"]
            # Checked before LLVM loads it: a damaged object file could crash the process, not raise.
            if entry["sha256"] != _sha256(text_path) or not obj.is_file() or entry["object_sha256"] != _sha256(obj):
                log.warning("the compiled %s is not of this model's trees: scoring with LightGBM", name)
                return None
            model = lleaves.Model(model_file=str(text_path))
            options = {k: entry[k] for k in ("raw_score", "fblocksize", "finline", "target_cpu", "target_cpu_features")}
            model.compile(cache=str(obj), **options)
            models[name] = model
    except Exception:  # noqa: BLE001 - a damaged artifact must not stop the model from serving
        log.exception("loading the compiled trees failed: scoring with LightGBM")
        return None
    return models


def predict(model, X: np.ndarray, num_threads: int) -> np.ndarray:
    """One output per row of X from a compiled booster (lleaves reads rows in C order)."""
    return model.predict(np.ascontiguousarray(X, dtype=np.float64), n_jobs=num_threads)
