"""Optional third-party packages (imported on first use, with an install hint) and thread limits
for BLAS and numba.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
import warnings

import numpy as np

_INSTALL_HINT = "pip install 'course_helpers[baselines]'"
_PINS = {"PyWGCNA": "PyWGCNA==2.2.1", "rustscenic": "rustscenic==0.5.1", "decoupler": "decoupler==2.2.0"}


def _require(module: str, what: str):
    """Import an optional dependency or raise an ImportError that says how to install it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the optional package {_PINS.get(top, top)}, which is not installed "
            f"({exc}). Fix: {_INSTALL_HINT}"
        ) from exc


def _import_pywgcna():
    """Import PyWGCNA without letting it change global state.

    PyWGCNA 2.2.1 at import time switches off *all* Python warnings
    (``warnings.filterwarnings("ignore")``), silences NumPy floating-point errors
    (``np.seterr``) and restyles matplotlib (``sns.set_style("white")``, rcParams). We undo all of
    that so that importing it inside a notebook has no hidden side effects.
    """
    if "PyWGCNA" in sys.modules:
        return sys.modules["PyWGCNA"]
    import matplotlib

    old_err = np.geterr()
    try:
        with warnings.catch_warnings(), matplotlib.rc_context(), contextlib.redirect_stdout(
            io.StringIO()
        ):
            return _require("PyWGCNA", "wgcna_modules()")
    finally:
        np.seterr(**old_err)


def _blas_threads(n: int | None):
    """Limit BLAS threads inside a block (threadpoolctl ships with scikit-learn)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


@contextlib.contextmanager
def _numba_threads(n: int | None):
    """Limit numba's parallel threads inside a block (restored afterwards)."""
    numba = sys.modules.get("numba")
    if n is None or numba is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)
