"""Which copy of this package runs a model, and whether it is the copy the model was logged with.

A logged model carries its own copy of ``revenue_model`` (MLflow's ``code_paths``)
and MLflow puts that copy first on ``sys.path`` when it loads the model. But
MLflow evicts nothing from ``sys.modules``: a process that imported
``revenue_model`` before loading a model goes on running the copy it imported,
whatever the model was trained with. The pyfunc calls ``check_code_in_use`` when
it loads, so that case is a clear refusal instead of silently different features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


class ForeignCode(RuntimeError):
    """The ``revenue_model`` in use is not the model's bundled copy, and its code differs."""


def code_fingerprint(package_dir: Path) -> str:
    """sha256 (hex) of the package's Python files: each one's relative path and bytes, in order."""
    package_dir = Path(package_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts):
        for part in (path.relative_to(package_dir).as_posix().encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "big") + part)  # lengths: no two file sets hash alike
    return digest.hexdigest()


def check_code_in_use(bundled_dir: Path, in_use_dir: Path = PACKAGE_DIR) -> None:
    """Return if the package in use is the bundled copy, or byte for byte the same code; else raise.

    Byte-identical code is accepted: it computes the same features, and it is what a process
    that imported this project sees when it loads a model logged from the same checkout.
    """
    bundled_dir, in_use_dir = Path(bundled_dir).resolve(), Path(in_use_dir).resolve()
    if bundled_dir == in_use_dir:
        return
    if not bundled_dir.is_dir():
        raise ForeignCode(f"the model has no bundled revenue_model at {bundled_dir}; "
                          f"this process runs the one in {in_use_dir}")
    bundled, in_use = code_fingerprint(bundled_dir), code_fingerprint(in_use_dir)
    if bundled != in_use:
        raise ForeignCode(
            f"this process runs revenue_model from {in_use_dir} (code sha256 {in_use[:16]}), "
            f"not the model's own copy in {bundled_dir} (sha256 {bundled[:16]}), and the two differ. "
            "The process imported revenue_model before loading the model, and Python keeps the "
            "first copy imported. Load the model in a process that has not imported revenue_model "
            "(pipelines.own_code_scoring.score_with_own_code does that), or run the code the model "
            "was logged with.")
