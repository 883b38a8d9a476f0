"""Warnings of the perturbation functions, as classes (code reacts to the class, never the text).

Each carries the data it reports as attributes, so a caller (a widget, a notebook) can act on
it without parsing the message.
"""
from __future__ import annotations

from .._utils import CourseWarning


class PerturbWarning(CourseWarning):
    """Base class of the warnings of :mod:`course_helpers.perturb`.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn(FewNullGenesWarning("Only 3 genes are available; using all of them.", 3, 9))
    >>> [type(w.message).__name__ for w in caught if isinstance(w.message, PerturbWarning)]
    ['FewNullGenesWarning']
    """


class GenesNotExpressedWarning(PerturbWarning):
    """Some requested genes are expressed in none of the chosen cells, so they get no rows.

    Emitted by :func:`~course_helpers.perturb.in_silico_perturb` (``"delete"``). Attribute
    ``genes``: the genes without rows (symbols where the model has a vocabulary, else token ids).

    Examples
    --------
    >>> w = GenesNotExpressedWarning("1 gene(s) are expressed in none of ...", genes=["CD3E"])
    >>> w.genes, isinstance(w, UserWarning)
    (['CD3E'], True)
    """

    def __init__(self, message: str, genes=()):
        super().__init__(message)
        self.genes = list(genes)


class FewNullGenesWarning(PerturbWarning):
    """Fewer genes are available for a random-gene null than were asked for; all are used.

    Emitted by :func:`~course_helpers.perturb.random_gene_null`. Attributes ``n_available`` and
    ``n_requested``.

    Examples
    --------
    >>> w = FewNullGenesWarning("Only 3 genes are available; using all of them.", 3, 50)
    >>> (w.n_available, w.n_requested)
    (3, 50)
    """

    def __init__(self, message: str, n_available: int = 0, n_requested: int = 0):
        super().__init__(message)
        self.n_available = int(n_available)
        self.n_requested = int(n_requested)


class FewCellsWarning(PerturbWarning):
    """Fewer cells are eligible than were asked for (:func:`~course_helpers.perturb.summarize_effects`).

    Attributes ``n_eligible`` and ``n_requested``.

    Examples
    --------
    >>> FewCellsWarning("Only 2 cell(s) are eligible (n_cells=5).", 2, 5).n_eligible
    2
    """

    def __init__(self, message: str, n_eligible: int = 0, n_requested: int = 0):
        super().__init__(message)
        self.n_eligible = int(n_eligible)
        self.n_requested = int(n_requested)


class EmbModeFallbackWarning(PerturbWarning):
    """``emb_mode="cls"`` was asked of a model without ``<cls>``; ``"cell"`` is used instead.

    Attributes ``requested`` and ``used`` (the emb_mode values).

    Examples
    --------
    >>> EmbModeFallbackWarning("...", "cls", "cell").used
    'cell'
    """

    def __init__(self, message: str, requested: str = "", used: str = ""):
        super().__init__(message)
        self.requested = requested
        self.used = used


__all__ = [
    "EmbModeFallbackWarning",
    "FewCellsWarning",
    "FewNullGenesWarning",
    "GenesNotExpressedWarning",
    "PerturbWarning",
]
