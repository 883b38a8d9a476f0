"""random_gene_null: the same perturbation applied to random expressed genes (a null)."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .._utils import CourseInputError, find_stack_level
from ..model import model_facts
from ..tokenize import TokenizedCells
from .effects import in_silico_perturb
from .inputs import _check_common
from .selection import _parse_states, _select_cells
from .warnings import FewNullGenesWarning


def random_gene_null(
    model,
    dataset,
    n_genes: int = 50,
    seed: int = 0,
    *,
    perturb_type: str = "delete",
    cell_states: Mapping | None = None,
    exclude=None,
    **kwargs,
) -> pd.DataFrame:
    """Perturb randomly chosen expressed genes: a null distribution for :func:`perturbation_stats`.

    ``n_genes`` genes are drawn uniformly (with ``seed``) from the genes expressed in at least one
    of the chosen cells (start-state cells if ``cell_states`` is given), leaving out ``exclude``
    (e.g. the genes you test), and perturbed exactly like :func:`in_silico_perturb` would.

    Parameters
    ----------
    model, dataset, perturb_type, cell_states
        As in :func:`in_silico_perturb`.
    n_genes
        How many random genes (fewer if the cells express fewer).
    seed
        Seed of the gene draw (and of ``max_cells`` subsampling).
    exclude
        Genes never drawn (symbols, Ensembl IDs or token ids).
    **kwargs
        Passed on to :func:`in_silico_perturb` (``cells``, ``max_cells``, ``emb_layer``,
        ``batch_size``, ``state_embs``, ``progress``, ``emb_mode``).

    Returns
    -------
    pandas.DataFrame
        The :func:`in_silico_perturb` result for the random genes;
        ``attrs["null_genes"]`` lists their token ids.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> four_cells = ch.data.load_tissue("chapter")[:4]
    >>> ds = ch.tokenize.tokenize(four_cells, model.gene_vocab, progress=False)
    >>> gene = ds[0]["input_ids"][5]
    >>> null = random_gene_null(model, ds, n_genes=3, cells=[0, 1], exclude=[gene],
    ...                         progress=False)
    >>> len(null.attrs["null_genes"]), gene in null.attrs["null_genes"]
    (3, False)
    >>> res = in_silico_perturb(model, ds, "delete", genes=[gene], cells=[0, 1], progress=False)
    >>> ch.perturb.perturbation_stats(res, null=null)["perturbed_token"].tolist() == [gene]
    True
    """
    if int(n_genes) < 1:
        raise CourseInputError(f"n_genes must be at least 1, got {n_genes}.")
    _check_common(perturb_type, kwargs.get("emb_mode"))
    info = model_facts(model, emb_layer=kwargs.get("emb_layer", -1))
    states = _parse_states(cell_states)
    reader = TokenizedCells(dataset)
    sel = _select_cells(reader, info, kwargs.get("cells"), kwargs.get("max_cells"), seed, states)
    pool = np.unique(np.concatenate(sel.xs))
    pool = pool[~np.isin(pool, info.special_ids)]
    if exclude is not None:
        pool = pool[~np.isin(pool, info.resolve_genes(exclude, argname="exclude"))]
    if len(pool) == 0:
        raise CourseInputError("The chosen cells express no gene to draw a null from.")
    if int(n_genes) > len(pool):
        warnings.warn(
            FewNullGenesWarning(
                f"Only {len(pool)} genes are available; using all of them.", len(pool), n_genes
            ),
            stacklevel=find_stack_level(),
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, min(int(n_genes), len(pool)), replace=False))
    res = in_silico_perturb(
        model,
        dataset,
        perturb_type=perturb_type,
        genes=[int(t) for t in chosen],
        cell_states=cell_states,
        seed=seed,
        **kwargs,
    )
    res.attrs["null_genes"] = [int(t) for t in chosen]
    return res
