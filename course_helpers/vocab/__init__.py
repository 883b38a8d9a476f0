"""Gene vocabularies: token ids, gene medians and symbol <-> Ensembl ID mapping.

A Geneformer model is always used together with three dictionaries:

* the **token dictionary** (Ensembl gene ID -> token id, plus special tokens such as ``<pad>``),
* the **gene median dictionary** (Ensembl gene ID -> the gene's non-zero median expression across
  the pretraining corpus; the tokenizer divides by it),
* the **gene name dictionary** (gene symbol -> Ensembl gene ID), only for convenience.

:class:`GeneVocab` holds all three. It reads plain-text exports (TSV/JSON) or, where only pickles
exist, reads them through a *restricted* unpickler that refuses anything but plain dictionaries of
numbers and strings (a pickle can otherwise run arbitrary code when it is loaded).

Files
-----
- ``gene_vocab.py``: the GeneVocab class (dictionaries, look-ups, TSV writer, constructors)
- ``resolve.py``: close_matches (the one fuzzy rule), GENE_GROUPS, the bodies of GeneVocab.resolve/suggest/group
- ``readers.py``: readers of TSV/CSV/JSON/PKL dictionary files, Ensembl ID patterns
- ``pickles.py``: safe_load_pickle, the restricted unpickler
- ``published.py``: where the V1/V2 dictionaries (folder, env variable, Hub) and teaching vocab are
- ``hub.py``: the pinned Hub repository and its file layout, hub_download, the git-lfs pointer check

Examples
--------
>>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
...                              {"ENSG00000141510": 2.5}, {"TP53": "ENSG00000141510"})
>>> vocab.version, len(vocab), vocab.tokens(["TP53"]), vocab.symbols([2])
('V1', 3, [2], ['TP53'])
"""

from __future__ import annotations

from .gene_vocab import GeneVocab
from .hub import (
    GENEFORMER_REPO,
    GENEFORMER_REVISION,
    HUB_DICTIONARIES,
    V1_HUB_FILES,
    V2_HUB_FILES,
    check_not_lfs_pointer,
    hub_download,
)
from .hub import LFS_POINTER_PREFIX as LFS_POINTER_PREFIX
from .pickles import safe_load_pickle
from .published import V1_PKL_FILES as V1_PKL_FILES
from .published import V1_TSV_FILES as V1_TSV_FILES
from .published import V2_LEGACY_SUFFIX as V2_LEGACY_SUFFIX
from .published import V2_PKL_FILES as V2_PKL_FILES
from .readers import ENSEMBL_ID_RE, VERSIONED_ID_RE, read_mapping
from .readers import SPECIAL_TOKENS as SPECIAL_TOKENS
from .readers import TSV_COLUMNS as TSV_COLUMNS
from .resolve import GENE_GROUPS, close_matches
from .resolve import SUGGEST_CUTOFF as SUGGEST_CUTOFF

__all__ = [
    "ENSEMBL_ID_RE",
    "GENEFORMER_REPO",
    "GENEFORMER_REVISION",
    "GENE_GROUPS",
    "HUB_DICTIONARIES",
    "V1_HUB_FILES",
    "V2_HUB_FILES",
    "VERSIONED_ID_RE",
    "GeneVocab",
    "check_not_lfs_pointer",
    "close_matches",
    "hub_download",
    "read_mapping",
    "safe_load_pickle",
]
