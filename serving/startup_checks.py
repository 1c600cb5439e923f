"""What to tell a person whose service did not start: a check made before the slow steps, and
the known start-up failures turned into one sentence saying what to do.

Pure apart from one socket bind; MLflow's errors are recognised by module name, so this
module can be imported (and the port checked) before MLflow is.
"""

from __future__ import annotations

import errno
import socket
import sys


def port_problem(host: str, port: int) -> str | None:
    """What to do when ``host:port`` cannot be listened on; None when it can.

    Binds with SO_REUSEADDR, as the service does, so a port left in TIME_WAIT by the
    previous run is not reported as taken.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return _port_text(host, port, error)
    return None


def _port_text(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another `python -m serving`, or `make serve` "
                f"still running?). `ss -ltnp 'sport = :{port}'` shows which process has it; stop it, "
                f"or use another port: PORT={port + 1} make serve")
    return f"cannot listen on {host}:{port}: {error.strerror or error}. Set HOST and PORT to an address of this machine"


def hint_for(error: BaseException, *, model_uri: str, tracking_uri: str) -> str | None:
    """One sentence on what to do about a known start-up failure; None for anything else."""
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    text = str(error)
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return "the service's port is already in use: " + text
    if kind.startswith("mlflow.") and ("not found" in text or "RESOURCE_DOES_NOT_EXIST" in text):
        store = tracking_uri or "./mlflow.db (MLFLOW_TRACKING_URI is not set)"
        return (f"there is no model at {model_uri} in the MLflow store {store}. Train and promote one "
                "with `make serve` (or `python -m pipelines.bootstrap`), or point MODEL_URI / "
                f"MLFLOW_TRACKING_URI at a registry that has it. MLflow said: {text.splitlines()[0][:300]}")
    if isinstance(error, RuntimeError) and "scorer" in text:
        return (f"MLflow's scoring server did not start ({text}); its own lines are above. "
                "Rerun with LOG_LEVEL=INFO for everything it printed")
    return None


def main() -> int:
    """``python -m serving.startup_checks``: `make serve` asks before a minute of training, not after."""
    from serving.config import Settings

    settings = Settings.from_env()
    if problem := port_problem(settings.host, settings.port):
        print(f"cannot start: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
