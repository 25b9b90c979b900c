"""What a run needs to be reproduced: interpreter, platform, packages, numeric libraries and git state."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _name_and_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the head of a distribution's metadata file.

    Both are single-line fields of the header block, so reading up to the first blank line
    gives what ``dist.metadata["Name"]`` and ``dist.version`` give, without parsing the whole
    file (long descriptions included) twice per distribution as the email parser they use does.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
        if name is not None and version is not None:
            break
    return name, version


def installed_packages() -> dict[str, str]:
    """Every installed distribution with its version, sorted by name (the first of a name on sys.path wins)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        if name and version is not None:
            found.setdefault(name.lower(), version)
        else:  # an unusual metadata file: ask importlib.metadata itself
            name = dist.metadata["Name"]
            if name:
                found.setdefault(name.lower(), dist.version)
    return dict(sorted(found.items()))


def git_state(directory: Path) -> dict[str, Any]:
    """The commit and dirty flag of the git work tree holding ``directory`` (empty if none)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def machine_busy() -> bool | None:
    """Whether the one-minute load average exceeds the core count (``None`` where the platform has
    no load average): the test for waiting passively and for scoring on one thread."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:
        return None


def prefer_passive_openmp() -> None:
    """On a machine busier than its cores, let OpenMP worker threads sleep between parallel regions.

    GNU OpenMP's threads spin for each other by default. Oversubscribed, that is ruinous: a
    two-thread boosting fit of 128k rows took 72-79 s spinning, 5.7-6.6 s passive (2-core VM,
    load 10). Idle, spinning is what makes the threads fast: the 200k-row benchmark run took
    12.3 s with the default and 23.6 s passive. So ``PASSIVE`` is chosen only when the one-minute
    load average exceeds the core count at start-up, and never over a value the user set.
    libgomp reads the variable once, when scikit-learn first loads it, so this runs at CLI
    start-up; results are the same either way, only the waiting changes.
    """
    if "OMP_WAIT_POLICY" not in os.environ and machine_busy():  # unknown load: the default policy
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


# Environment variables that change numeric results or their order of evaluation.
REPRODUCIBILITY_VARIABLES = ("PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
                             "SKLEARN_SEED", "CUDA_VISIBLE_DEVICES")


def numeric_libraries() -> list[dict[str, Any]]:
    """BLAS / OpenMP libraries numpy and scikit-learn loaded (implementation and version)."""
    try:
        import numpy  # noqa: F401  (load the libraries a run uses, so they are listed)
        import scipy.linalg  # noqa: F401
        import sklearn.utils._openmp_helpers  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    return sorted(({k: info.get(k) for k in keep if info.get(k) is not None} for info in threadpool_info()),
                  key=lambda i: (str(i.get("internal_api")), str(i.get("version"))))


def capture(spec_dir: Path) -> dict[str, Any]:
    """The environment section of the evidence (``assay diff`` and ``assay replay`` compare it)."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "packages": installed_packages(),
        "numeric_libraries": numeric_libraries(),
        "variables": {name: os.environ[name] for name in REPRODUCIBILITY_VARIABLES if name in os.environ},
        "git": git_state(spec_dir),
    }
