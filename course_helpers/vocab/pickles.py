"""Restricted unpickling: :func:`safe_load_pickle` reads the published ``.pkl`` dictionaries and
refuses anything but plain dictionaries of numbers and strings (a pickle can otherwise run
arbitrary code when it is loaded).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._utils import CourseInputError
from .hub import check_not_lfs_pointer


def _numpy_scalar():
    try:  # numpy >= 2
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


def _latin1_encode(text, encoding="latin1"):
    """The only use of ``_codecs.encode`` a protocol-2 pickle of numpy scalars makes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CourseInputError(
            "A pickled dictionary asked to encode something other than latin-1 text; it was NOT "
            "loaded. Fix: use the plain-text (TSV/JSON) export of the dictionary."
        )
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals plain numpy-scalar dictionaries need.

    Admitted: ``numpy.dtype`` and ``numpy[._]core.multiarray.scalar`` (numpy integer and float
    scalars as values, any pickle protocol) and ``_codecs.encode`` restricted to latin-1 text
    (protocol 2 stores the scalars' bytes that way). Python ints, floats and strings need no
    globals. Everything else is refused before it can run.
    """

    _ALLOWED: ClassVar[frozenset] = frozenset(
        {
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            if name == "dtype":
                return np.dtype
            if name == "encode":
                return _latin1_encode
            return _numpy_scalar()
        raise CourseInputError(
            f"{self._source} is not a plain dictionary file and may be unsafe: it asks to load "
            f"'{module}.{name}', which a dictionary of gene IDs and numbers never needs. "
            "It was NOT loaded. Fix: use the plain-text (TSV/JSON) export of the dictionary, or "
            "check the file's origin and SHA-256 checksum before using it."
        )

    def persistent_load(self, pid):  # pragma: no cover - plain dict pickles have none
        raise CourseInputError(
            f"{self._source} is not a plain dictionary file and may be unsafe (persistent ids). "
            "It was NOT loaded. Fix: use the plain-text (TSV/JSON) export of the dictionary."
        )


def safe_load_pickle(path) -> dict:
    """Read a pickled dictionary with a restricted unpickler.

    Values may be Python ints, floats and strings or numpy integer/float scalars (as the V1 and
    V2 Geneformer dictionaries use): only ``numpy.dtype``, ``numpy.core.multiarray.scalar``
    (``numpy._core.multiarray.scalar``) and latin-1 ``_codecs.encode`` may be referenced;
    anything else (functions, classes, arrays, ``os.system`` ...) raises
    :class:`~course_helpers._utils.CourseInputError` before it can run. A git-lfs pointer file
    in place of the pickle gets its own message (:func:`check_not_lfs_pointer`).

    Parameters
    ----------
    path
        Path of a ``.pkl`` file holding one dictionary.

    Returns
    -------
    dict
        The dictionary, exactly as pickled (numpy scalars stay numpy scalars).

    Examples
    --------
    >>> import pickle, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.pkl")
    >>> with open(p, "wb") as f:
    ...     pickle.dump({"ENSG00000141510": 2}, f)
    >>> safe_load_pickle(p)
    {'ENSG00000141510': 2}
    """
    path = Path(path)
    if not path.is_file():
        raise CourseInputError(f"Dictionary file not found: {path}. Fix: check the path.")
    check_not_lfs_pointer(path, "dictionary")
    with open(path, "rb") as f:
        try:
            obj = _RestrictedUnpickler(f, source=str(path)).load()
        except CourseInputError:
            raise
        except Exception as e:  # truncated / not a pickle at all
            raise CourseInputError(
                f"Could not read {path} as a pickled dictionary ({type(e).__name__}: {e}). "
                "Fix: check that the file is complete, or use its TSV/JSON export."
            ) from e
    if not isinstance(obj, dict):
        raise CourseInputError(
            f"{path} holds a {type(obj).__name__}, not a dictionary. Fix: pass the token, "
            "median or gene-name dictionary file."
        )
    return obj
