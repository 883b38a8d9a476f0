"""The tokenized Hugging Face dataset: building it from Arrow, its tokenization record
(:func:`tokenization_info`), :func:`save` and :func:`load`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .._utils import CourseInputError


def _to_arrow(values):
    import pyarrow as pa

    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(s.cat.categories.dtype if s.cat.categories.dtype != object else object)
    try:
        return pa.Array.from_pandas(s)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(s.astype(str).tolist(), type=pa.string())


_INFO_KEY = "course_helpers.tokenize"


def _dataset_from_table(table, info: dict | None = None):
    import json

    import datasets
    from datasets.fingerprint import generate_random_fingerprint

    ds_info = None
    if info:
        ds_info = datasets.DatasetInfo(description=json.dumps({_INFO_KEY: info}))
    # a random fingerprint, as datasets itself uses for unhashable inputs; hashing the whole
    # table would cost more than tokenising it
    return datasets.Dataset(table, info=ds_info, fingerprint=generate_random_fingerprint())


def tokenization_info(dataset) -> dict:
    """How a dataset was tokenised: vocabulary, model version, gene ID mapping, gene counts.

    ``gene_id_mapping`` is ``None`` when input IDs were used as they are, else which mapping
    dictionary mapped them (and IDs landing on the same gene were summed). Datasets not made by
    :func:`tokenize` give ``{}``.

    Examples
    --------
    >>> from course_helpers.tokenize import tokenize
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.vocab import GeneVocab
    >>> ds = tokenize(load_tissue("chapter")[:20], GeneVocab.teaching(), progress=False)
    >>> info = tokenization_info(ds)
    >>> info["vocab"], info["model_version"], info["gene_id_mapping"], info["n_input_genes_used"]
    ('teaching', 'V1', None, 2000)

    With a mapping dictionary, ``gene_id_mapping`` names it (with the published V1 dictionaries
    it reads ``'geneformer-v1 Ensembl ID mapping dictionary'``):

    >>> cells = load_tissue("chapter")[:20]
    >>> ds = tokenize(cells, GeneVocab.teaching(), progress=False,
    ...               gene_mapping={g: g for g in cells.var_names})
    >>> info = tokenization_info(ds)
    >>> info["gene_id_mapping"], info["n_input_genes_used"]
    ('the dict passed as gene_mapping', 2000)
    """
    import json

    desc = getattr(getattr(dataset, "info", None), "description", "") or ""
    try:
        return dict(json.loads(desc).get(_INFO_KEY, {}))
    except (ValueError, AttributeError):
        return {}


def _check_target(path, overwrite) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CourseInputError(
            f"{path} exists and is a file. Fix: choose a folder path for the dataset."
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CourseInputError(
            f"{path} already exists and is not empty. "
            "Fix: choose another path or pass overwrite=True."
        )
    return path


def save(dataset, path, overwrite: bool = False) -> Path:
    """Save a tokenised dataset to a folder (``datasets.Dataset.save_to_disk``).

    Examples
    --------
    >>> import os, tempfile
    >>> from course_helpers.tokenize import tokenize
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.vocab import GeneVocab
    >>> ds = tokenize(load_tissue("chapter")[:20], GeneVocab.teaching(), progress=False)
    >>> path = save(ds, os.path.join(tempfile.mkdtemp(), "tokenized"))
    >>> path.name, load(path).num_rows
    ('tokenized', 20)
    """
    import datasets

    if not isinstance(dataset, datasets.Dataset) or "input_ids" not in dataset.column_names:
        raise CourseInputError(
            "save expects a tokenised datasets.Dataset (with an 'input_ids' column)."
        )
    path = _check_target(path, overwrite)
    if path.is_dir() and overwrite:
        shutil.rmtree(path)
    dataset.save_to_disk(str(path))
    return path


def load(path):
    """Load a dataset saved with :func:`save` or :func:`tokenize_to_disk`.

    Examples
    --------
    >>> import os, tempfile
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.tokenize import tokenize_to_disk
    >>> folder = os.path.join(tempfile.mkdtemp(), "tokenized")
    >>> _ = tokenize_to_disk(load_tissue("chapter")[:5], folder, "teaching", progress=False)
    >>> ds = load(folder)
    >>> ds.num_rows, ds.column_names
    (5, ['input_ids', 'length', 'cell_id'])
    """
    import datasets

    path = Path(path)
    if not path.is_dir():
        raise CourseInputError(
            f"No tokenised dataset at {path}. "
            "Fix: check the path, or create it with tokenize_to_disk."
        )
    try:
        return datasets.Dataset.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise CourseInputError(
            f"{path} is not a saved datasets.Dataset ({e}). Fix: check the path."
        ) from e
