"""gunicorn's settings file (the Procfile's `web:` reads it): Prometheus across workers.

Each gunicorn worker is a process with its own counters; a scrape of `/metrics` lands
on one of them. prometheus-client's multiprocess mode has every worker write its
values to files in PROMETHEUS_MULTIPROC_DIR, and `/metrics` adds them all up. So:

- the folder is set before any worker imports prometheus-client (this file runs in the
  master, before it forks): PROMETHEUS_MULTIPROC_DIR when the environment gives one,
  else a new private folder (`tempfile.mkdtemp`: a random name, mode 0700);
- a folder the environment gives must be a real directory (not a symlink), owned by
  the user gunicorn runs as, and writable by no one else; otherwise gunicorn refuses
  to start, with a one-line message. Whoever can write to it can forge series, read
  them without the token, or (with a symlink) have `on_starting` delete `*.db` files
  elsewhere;
- it is emptied when the master starts (`on_starting`): values of an earlier run of
  the service, or of workers long gone, would otherwise be added to this run's;
- each worker creates its files readable by its own user only (`post_fork` adds 077
  to the umask);
- a worker that exits is marked dead (`child_exit`), so its live gauges are dropped
  (its counters are kept: what it counted happened);
- a folder this file made is removed when the master exits.

With IVR_LOG_FORMAT=json, gunicorn's own lines (its error log and the access log) are
JSON objects too, like the app's.

Everything else stays on the Procfile's command line. See docs/operations.md,
"Metrics and logs".
"""

import logging
import os
import shutil
import stat
import sys
import tempfile
from typing import Any

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_MADE = "IVR_PROMETHEUS_DIR_MADE"  # the folder this master made (kept across a HUP reload)


def folder_problem(path: str) -> str | None:
    """What makes `path` unsafe as the metrics folder, or None when it is safe."""
    try:
        info = os.lstat(path)  # lstat: a symlink is judged as itself, not followed
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by its group or by everyone (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _choose_folder() -> str:
    """The folder: the environment's (made 0700 if missing, then checked), else a new
    private one; exits with a one-line message when the environment's is unsafe."""
    given = os.environ.get(VARIABLE, "")
    if not given:
        made = tempfile.mkdtemp(prefix="ivr-prometheus-")
        os.environ[VARIABLE] = os.environ[_MADE] = made
        return made
    if not os.path.lexists(given):
        os.makedirs(given, mode=0o700, exist_ok=True)
    problem = folder_problem(given)
    if problem:
        # SystemExit passes gunicorn's config loader: one line on stderr, status 1.
        sys.exit(f"ivr: refusing to start: {VARIABLE} {given!r} {problem}")
    return given


MULTIPROC_DIR = _choose_folder()
_MADE_HERE = os.environ.get(_MADE) == MULTIPROC_DIR


def _json_logs() -> None:
    """IVR_LOG_FORMAT=json: gunicorn's log handlers write JSON lines too."""
    if os.environ.get("IVR_LOG_FORMAT", "").strip().lower() != "json":
        return
    from ivr.metrics.logs import JsonFormatter  # standard library only: no prometheus here

    for name in ("gunicorn.error", "gunicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(JsonFormatter())


def on_starting(server: Any) -> None:
    """Empty the metrics folder before the first worker starts (checked again first:
    nothing is deleted in a folder that is not safe)."""
    _json_logs()
    problem = folder_problem(MULTIPROC_DIR)
    if problem:
        sys.exit(f"ivr: refusing to start: {VARIABLE} {MULTIPROC_DIR!r} {problem}")
    for name in os.listdir(MULTIPROC_DIR):
        if name.endswith(".db"):
            os.remove(os.path.join(MULTIPROC_DIR, name))
    server.log.info("Prometheus multiprocess folder: %s (emptied)", MULTIPROC_DIR)


def post_fork(server: Any, worker: Any) -> None:
    """A worker's files (its metric values among them) are its user's alone; a worker
    forked after a reload (which resets gunicorn's handlers) logs JSON too."""
    os.umask(os.umask(0o077) | 0o077)
    _json_logs()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that exited."""
    from prometheus_client import multiprocess  # imported after the folder is set

    multiprocess.mark_process_dead(worker.pid, MULTIPROC_DIR)


def on_exit(server: Any) -> None:
    """Remove the folder this file made (one given by the environment is left)."""
    if _MADE_HERE:
        shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
