"""In-silico perturbation: delete or overexpress genes and measure how the embeddings move.

Geneformer's in-silico perturbation changes a cell's rank-value encoding and asks the model how
much that changes the cell. This module reproduces the reference ``InSilicoPerturber`` numbers
(see ``CONTRIBUTING.md`` and the perturbation fixture) much faster, and adds statistics.

* :func:`in_silico_perturb` - perturb every gene (or a list of genes, or an anchor gene combined
  with each other gene) in every chosen cell; one row per (cell, perturbed gene).
* :func:`perturb_pairs` - single and combined perturbations of gene pairs, with a synergy score.
* :func:`random_gene_null` - the same perturbation applied to randomly chosen genes: a null
  distribution for :func:`perturbation_stats`.
* :func:`net_shift` - shift toward the goal minus shift toward the start state.
* :func:`adjust_for_rank` - subtract the effect expected from the deleted gene's rank alone
  (rank-matched null), before :func:`perturbation_stats`.
* :func:`perturbation_stats` - per-gene summary, Mann-Whitney rank-sum p-value against a null,
  Benjamini-Hochberg FDR (:func:`benjamini_hochberg`).
* :func:`perturb_ids` - one cell's token ids after a deletion / overexpression (the rule).
* :func:`summarize_effects` - a few chosen genes in a few cells, against random genes, with
  synergy for a pair: the tables :class:`~course_helpers.widgets.PerturbationExplorer` shows.

Files (one concern each; the public names are re-exported here)
-----------------------------------------------------------------
* ``rule.py`` - :func:`perturb_ids`: THE delete / overexpress rule (the engine and the widgets
  both call it).
* ``effects.py`` - :func:`in_silico_perturb` (and :class:`GeneEffects`): one gene at a time,
  or an anchor gene with each other gene.
* ``pairs.py`` - :func:`perturb_pairs`: gene pairs alone and together, synergy.
* ``null.py`` - :func:`random_gene_null`: random expressed genes, a null distribution.
* ``stats.py`` - :func:`net_shift`, :func:`adjust_for_rank`, :func:`perturbation_stats`,
  :func:`benjamini_hochberg`.
* ``summary.py`` - :func:`summarize_effects` / :class:`EffectSummary`: the tables an explorer
  shows for a few chosen genes (effects, null, per-gene summary, moved genes, synergy).
* ``warnings.py`` - the warning classes (:class:`PerturbWarning` and subclasses).
* ``inputs.py`` - ``perturb_type`` / ``emb_mode`` checks, token ids to symbols (model facts and
  gene names: :func:`course_helpers.model.model_facts`, ``ModelFacts.resolve_genes``).
* ``selection.py`` - which cells are perturbed; cell-state embeddings.
* ``copies.py`` - perturbed copies of a cell as blocks of index arithmetic (uses ``rule.py``).
* ``engine.py`` - runs the blocks through the encoder and compares embeddings.

What is measured (exactly as the reference does it)
----------------------------------------------------
*Perturbations.* ``"delete"`` removes the gene's token, so every later gene moves up one place.
``"overexpress"`` moves the gene to the front (after ``<cls>`` in V2 models); a gene that is not
in the cell is inserted at the front and the cell is cut to the model's input size. A gene that
is already first is left alone (no row), because moving it changes nothing.

*Without cell states* the effect is ``cos_sim``: the mean, over the other genes of the cell, of
the cosine between each gene's embedding in the perturbed cell and in the original cell. The
perturbed gene is left out on both sides. It is 1 when nothing changed and smaller the more the
context changed. It is *not* the cosine of mean-pooled cell embeddings.

*With cell states* (``cell_states={"state_key", "start_state", "goal_state", "alt_states"}``)
only start-state cells are perturbed and the effect is ``shift = cos(perturbed cell, state) -
cos(original cell, state)`` for every state (start, goal and alternatives), where a cell
embedding is the mean of its gene embeddings (original: all n genes; perturbed: all genes of the
perturbed cell) and a state embedding is the mean of the state's cell embeddings
(:func:`course_helpers.embed.state_embeddings`). A positive shift means the perturbation moved
the cell towards that state.

*V2 models* (a vocabulary with ``<cls>``) default, as the reference does, to ``emb_mode="cls"``:
the effect is then measured on the ``<cls>`` token's embedding instead, ``cos_sim`` = cos(perturbed
``<cls>``, original ``<cls>``) and ``shift = cos(perturbed <cls>, state) - cos(original <cls>,
state)`` with ``<cls>`` state embeddings. V1 models have no ``<cls>`` and always use the gene
embeddings (``"cls"`` falls back to ``"cell"`` with a warning, as in the reference).

Embeddings are taken from ``emb_layer`` (``-1`` = second-to-last layer, the reference default).

Speed
-----
The reference runs the full masked-LM model (whose output head is ~73 % of the time and is never
used) once per perturbation batch of one cell, and builds every perturbed cell with Python list
operations. Here each cell's perturbed copies are built with vectorised index arithmetic, copies
of cells of similar length share forward passes, only the encoder runs, the unperturbed cell is
embedded once, and cosines are computed on the device in float64.
"""
from .effects import GeneEffects, in_silico_perturb
from .null import random_gene_null
from .pairs import perturb_pairs
from .rule import perturb_ids
from .stats import adjust_for_rank, benjamini_hochberg, net_shift, perturbation_stats
from .summary import EffectSummary, summarize_effects
from .warnings import (
    EmbModeFallbackWarning,
    FewCellsWarning,
    FewNullGenesWarning,
    GenesNotExpressedWarning,
    PerturbWarning,
)

__all__ = [
    "EffectSummary",
    "EmbModeFallbackWarning",
    "FewCellsWarning",
    "FewNullGenesWarning",
    "GeneEffects",
    "GenesNotExpressedWarning",
    "PerturbWarning",
    "adjust_for_rank",
    "benjamini_hochberg",
    "in_silico_perturb",
    "net_shift",
    "perturb_ids",
    "perturb_pairs",
    "perturbation_stats",
    "random_gene_null",
    "summarize_effects",
]
