"""Named splits of the teaching tissue and their cache: :func:`load_tissue` (the shipped chapter
split, or a generated-and-cached larger one) and :func:`cache_dir`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .._utils import CourseInputError, find_stack_level
from .design import TISSUE_DIR, _read_design
from .simulate import simulate_tissue

#: Named splits: number of cells and seed. Different seeds -> distinct cells.
SPLITS: dict[str, dict] = {
    "chapter": {"n_cells": 3000, "seed": 1, "shipped": True},
    "pretrain": {"n_cells": 20000, "seed": 2, "shipped": False},
    "heldout": {"n_cells": 2000, "seed": 3, "shipped": False},
}


def cache_dir() -> Path:
    """Folder for generated data: ``$COURSE_HELPERS_CACHE`` or ``~/.cache/course_helpers``.

    Examples
    --------
    >>> cache_dir().name in {"course_helpers"} or True
    True
    """
    env = os.environ.get("COURSE_HELPERS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "course_helpers"


def _write_h5ad(adata, path: Path, compression="gzip"):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    adata.write_h5ad(tmp, compression=compression)
    os.replace(tmp, path)


def load_tissue(split: str = "chapter", *, regenerate: bool = False,
                progress: bool = True) -> anndata.AnnData:  # noqa: F821
    """Load a split of the teaching tissue.

    Parameters
    ----------
    split
        ``"chapter"`` (3,000 cells, seed 1, shipped with the package), ``"pretrain"``
        (20,000 cells, seed 2) or ``"heldout"`` (2,000 cells, seed 3). Non-shipped splits are
        simulated on first use (a few seconds) and cached in :func:`cache_dir`.
    regenerate
        Simulate again even if a file exists.
    progress
        Show a progress bar while simulating.

    Returns
    -------
    anndata.AnnData
        Raw integer counts; schema as in :func:`simulate_tissue`.

    Examples
    --------
    >>> adata = load_tissue("chapter")
    >>> adata.n_obs, adata.n_vars
    (3000, 2000)
    >>> adata.obs.columns.tolist()
    ['cell_id', 'cell_type', 'state', 'n_counts', 'donor', 'batch', 'low_quality']
    """
    import anndata as ad

    if split not in SPLITS:
        raise CourseInputError(
            f"unknown split {split!r}. Fix: use one of {sorted(SPLITS)} (or simulate_tissue())."
        )
    spec = SPLITS[split]
    fp = _read_design()["fingerprint"]
    shipped = TISSUE_DIR / f"tissue_{split}.h5ad"
    if spec["shipped"] and shipped.is_file() and not regenerate:
        adata = ad.read_h5ad(shipped)
        if adata.uns.get("teaching_tissue", {}).get("design_fingerprint") == fp:
            return adata
        warnings.warn(
            f"{shipped.name} was made from an older tissue design; simulating it again "
            "(run `python data_scripts/simulate_tissue.py --split chapter` to refresh it).",
            stacklevel=find_stack_level(),
        )
    path = cache_dir() / f"tissue_{split}_n{spec['n_cells']}_s{spec['seed']}_{fp}.h5ad"
    if path.is_file() and not regenerate:
        try:
            return ad.read_h5ad(path)
        except (OSError, KeyError, ValueError) as e:  # a broken cache file: simulate again
            warnings.warn(f"cached {split} split at {path} is unreadable ({e}); simulating again.",
                          stacklevel=find_stack_level())
    adata = simulate_tissue(spec["n_cells"], spec["seed"], progress=progress)
    try:
        _write_h5ad(adata, path, compression="gzip")
    except OSError as e:  # read-only home: still return the data
        warnings.warn(f"could not cache {split} split at {path}: {e}",
                      stacklevel=find_stack_level())
    return adata
