"""The scorer process's entry point: ``python -m serving.scorer_main --port P --workers N``.

It runs uvicorn on ``serving.scorer_app:build`` (MLflow's scoring app) after two things
that must happen in the process the service started, before anything else:

- it dies with the service. The service passes the read end of a pipe whose write end
  only the service holds (PARENT_FD_ENV); a thread here blocks reading it, and the read
  returns when that write end is closed, which the kernel does when the service exits in
  any way, ``kill -9`` included. Then the whole process group (uvicorn and its workers)
  is killed. A parent-death signal (PR_SET_PDEATHSIG) would not do: it fires when the
  parent *thread* that forked ends, and the service starts scorers from worker threads too.
- it lowers its own CPU priority when asked (NICE_ENV): a shadow scorer yields the two
  cores to the champion, whose answers clients wait for.

Only the standard library and ``serving.scorer_env`` are imported before uvicorn: the
scorer must not import ``revenue_model`` before it loads the model (the model brings its
own copy).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from serving.scorer_env import NICE_ENV, PARENT_FD_ENV


def die_with_parent(fd: int) -> threading.Thread:
    """Kill this process group as soon as the pipe ``fd`` reaches end of file (the service is gone)."""

    def watch():
        try:
            while os.read(fd, 1):  # the service never writes: any return is end of file or an error
                pass
        except OSError:
            pass
        os.killpg(os.getpgrp(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    if os.environ.get(PARENT_FD_ENV):
        die_with_parent(int(os.environ[PARENT_FD_ENV]))
    if int(os.environ.get(NICE_ENV) or 0):
        os.nice(int(os.environ[NICE_ENV]))  # before uvicorn starts threads or workers: they inherit it
    import uvicorn

    # `python -m uvicorn` would read UVICORN_LOG_LEVEL (set by the service: logging_setup); uvicorn.run does not.
    uvicorn.run("serving.scorer_app:build", factory=True, host=args.host, port=args.port,
                workers=args.workers, access_log=False, log_level=os.environ.get("UVICORN_LOG_LEVEL"))


if __name__ == "__main__":
    main()
