"""Reference profiles by model version, loaded lazily, once each, while the service runs.

The served version can change while the service runs (an alias that moves), and /drift can be
asked about any version the log holds, so profiles are keyed by version and fetched on first use:
the ``reference_profile.json`` logged inside the model (read from the registry), or, for a model
logged before profiles existed, one computed on demand from its training run's test split, in a
separate process (serving/reference_profile.py), ``MAX_COMPUTING`` at a time. A version with
neither is ``NoReference``, remembered like a profile (a model version's artifacts do not change);
a version the registry does not have (``UnknownVersion``) and a registry that does not answer
(``ReferenceUnavailable``) are asked again next time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from pipelines.reference_profiles import HOLDOUT_ARTIFACT, load_reference_profile, logged_holdout
from revenue_model.drift import profile_from_json
from serving.reference_profile import NO_REFERENCE_EXIT

log = logging.getLogger("serving.drift")

# Versions whose answer is kept: far more than a service ever serves in a day, and a bound on
# what a client asking for many versions can make it hold.
MAX_VERSIONS = 16
# Profiles computed at once: each is a process holding a training run's test split and the model.
MAX_COMPUTING = 1


@dataclass(frozen=True)
class Reference:
    model_uri: str
    profile: dict
    source: str          # "model reference profile", or where it was computed from


class NoReference(Exception):
    """The version has no profile and none can be computed (or the registry has no such version)."""


class UnknownVersion(NoReference):
    """The registry has no such model version: not remembered (versions a client makes up must not
    push real ones out), asked again next time (one registry read)."""


class ReferenceUnavailable(Exception):
    """The registry or the computation failed for now; worth asking again later."""


class References:
    def __init__(self, *, tracking_uri: str = "", timeout_s: float = 300.0):
        self.tracking_uri = tracking_uri
        self.timeout_s = timeout_s
        self._known: OrderedDict[str, Reference | NoReference] = OrderedDict()
        self._loading: dict[str, asyncio.Future] = {}
        self._computing = asyncio.Semaphore(MAX_COMPUTING)

    async def get(self, model_uri: str) -> Reference:
        """The profile of the model at ``model_uri`` (``models:/name/version``, or the served URI);
        raises NoReference or ReferenceUnavailable. Concurrent callers share one load."""
        known = self._known.get(model_uri)
        if known is None:
            loading = self._loading.get(model_uri)
            if loading is None:
                loading = self._loading[model_uri] = asyncio.ensure_future(self._load(model_uri))
                loading.add_done_callback(lambda _: self._loading.pop(model_uri, None))
            known = await asyncio.shield(loading)
        if model_uri in self._known:
            self._known.move_to_end(model_uri)
        if isinstance(known, NoReference):
            raise known
        return known

    async def _load(self, model_uri: str) -> Reference | NoReference:
        try:
            found = await asyncio.to_thread(_logged, model_uri) or await self._computed(model_uri)
        except UnknownVersion as missing:
            return missing
        except NoReference as missing:
            found = missing
        self._known[model_uri] = found
        while len(self._known) > MAX_VERSIONS:
            self._known.popitem(last=False)
        return found

    async def _computed(self, model_uri: str) -> Reference:
        """A profile computed from the model's training run's test split, in a process of its own."""
        async with self._computing:
            return await self._compute(model_uri)

    async def _compute(self, model_uri: str) -> Reference:
        log.info("%s has no reference profile: computing one from its training run's test split", model_uri)
        env = {**os.environ, **({"MLFLOW_TRACKING_URI": self.tracking_uri} if self.tracking_uri else {})}
        with tempfile.TemporaryDirectory(prefix="reference-") as directory:
            out = Path(directory) / "profile.json"
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "serving.reference_profile", model_uri, str(out), env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                _, stderr = await asyncio.wait_for(process.communicate(), self.timeout_s)
            except asyncio.TimeoutError:
                raise ReferenceUnavailable(f"computing the reference profile of {model_uri} took over "
                                           f"{self.timeout_s:g} s (DRIFT_REFERENCE_TIMEOUT_S)") from None
            finally:
                if process.returncode is None:  # timed out, or the service is stopping
                    process.kill()
                    await process.wait()
            reason = stderr.decode("utf-8", "replace").strip().splitlines()
            if process.returncode == NO_REFERENCE_EXIT:
                raise NoReference(reason[-1] if reason else f"{model_uri} has no reference")
            if process.returncode != 0:
                raise ReferenceUnavailable(f"computing the reference profile of {model_uri} failed: "
                                           f"{reason[-1] if reason else process.returncode}")
            profile = profile_from_json(out.read_text())
            source = out.with_suffix(".source").read_text()
        log.info("drift reference of %s: %s", model_uri, source)
        return Reference(model_uri, profile, source)


def _logged(model_uri: str) -> Reference | None:
    """The profile logged inside the model (one small file read from the registry); None when one
    can be computed from the training run's test split; else NoReference."""
    try:
        profile = load_reference_profile(model_uri)
        if profile is None:
            run_id = mlflow.models.get_model_info(model_uri).run_id
            if not (run_id and logged_holdout(run_id)):
                raise NoReference(f"{model_uri} has no reference profile and its training run no {HOLDOUT_ARTIFACT}")
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UnknownVersion(f"the registry has no model {model_uri}") from None
        raise ReferenceUnavailable(f"the registry did not answer for {model_uri}: {error.message}") from None
    except (OSError, ValueError) as error:
        raise ReferenceUnavailable(f"the reference profile of {model_uri} could not be read: {error}") from None
    return None if profile is None else Reference(model_uri, profile, "model reference profile")

