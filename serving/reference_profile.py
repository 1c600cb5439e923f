"""A model version's drift reference profile: `python -m serving.reference_profile MODEL_URI OUT`.

Part 1's ``pipelines.evaluate.model_reference``: the ``reference_profile.json`` logged inside the
model, or, for a model logged before profiles existed, one computed from the test split its
training run logged (scored with the model). Reading the model's files imports LightGBM and
computing scores loads the model, so the service runs this in a process of its own, once per
version, instead of carrying both in its memory for good.

Writes the profile's JSON to OUT and where it came from to OUT with the suffix ``.source``, and
exits 0; exits ``NO_REFERENCE_EXIT`` with the reason on stderr when there is no reference (or the
registry has no such model); any other failure is a traceback and exit status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NO_REFERENCE_EXIT = 3


def main(argv: list[str] | None = None) -> int:
    model_uri, out = (argv if argv is not None else sys.argv[1:])[:2]
    # Imported here: the service imports this module for its constant only.
    from mlflow.exceptions import MlflowException

    from pipelines.evaluate import model_reference

    try:
        profile, source = model_reference(model_uri)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        print(f"the registry has no model {model_uri}", file=sys.stderr)
        return NO_REFERENCE_EXIT
    if profile is None:
        print(f"{model_uri} has no reference profile and its training run no logged test split",
              file=sys.stderr)
        return NO_REFERENCE_EXIT
    Path(out).write_text(json.dumps(profile))
    Path(out).with_suffix(".source").write_text(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
