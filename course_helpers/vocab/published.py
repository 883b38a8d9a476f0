"""Where the published V1/V2 dictionaries and the teaching vocabulary are found: a local folder (TSV
export, pickles, or a clone of the Hub repository), ``GENEFORMER_V1_DIR``/``GENEFORMER_V2_DIR``,
or the Hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._utils import CourseInputError
from .hub import GENEFORMER_REPO, HUB_DICTIONARIES, V1_HUB_FILES, V2_HUB_FILES, hub_download

if TYPE_CHECKING:  # pragma: no cover
    from .gene_vocab import GeneVocab

#: Plain-text exports of the V1 dictionaries (preferred over the pickles when both are present).
V1_TSV_FILES = {"vocab": "vocab_gc30M.tsv", "gene_names": "gene_name_id_gc30M.tsv"}
V1_PKL_FILES = {k: v.rsplit("/", 1)[-1] for k, v in V1_HUB_FILES.items()}
V2_PKL_FILES = {k: v.rsplit("/", 1)[-1] for k, v in V2_HUB_FILES.items()}
#: Suffix of the V2 dictionaries in clones from before 2025-06-18 (byte-identical to gc104M).
V2_LEGACY_SUFFIX = "gc95M"


#: The teaching model's vocabulary (shipped in ``course_helpers/assets``).
_TEACHING_VOCAB = (Path(__file__).resolve().parent.parent / "assets" / "teaching_model"
                   / "vocab.tsv")


def _find_in_folder(cls, folder: Path, name: str, version: str = "V1") -> GeneVocab | None:
    """The ``version`` dictionaries in ``folder`` (or in its Hub-layout subfolder), or None."""
    if version == "V1":
        tsv = folder / V1_TSV_FILES["vocab"]
        mapping = folder / V1_PKL_FILES["ensembl_mapping"]
        mapping = mapping if mapping.is_file() else None
        if tsv.is_file():
            names = folder / V1_TSV_FILES["gene_names"]
            return cls.from_tsv(tsv, names if names.is_file() else None, name=name,
                                ensembl_mapping=mapping)
        candidates = [V1_PKL_FILES]
        sub = folder / "geneformer" / "gene_dictionaries_30m"
    else:
        legacy = {k: v.replace("gc104M", V2_LEGACY_SUFFIX) for k, v in V2_PKL_FILES.items()}
        candidates = [V2_PKL_FILES, legacy]
        sub = folder / "geneformer"
    for files in candidates:
        pk = {k: folder / v for k, v in files.items()}
        if pk["token_dictionary"].is_file() and pk["gene_medians"].is_file():
            return cls.from_files(
                pk["token_dictionary"],
                pk["gene_medians"],
                pk["gene_names"] if pk["gene_names"].is_file() else None,
                name=name,
                ensembl_mapping=(
                    pk["ensembl_mapping"] if pk["ensembl_mapping"].is_file() else None
                ),
            )
    if sub.is_dir():  # a folder laid out like the Hub repository (a clone)
        return _find_in_folder(cls, sub, name, version)
    return None

def _load_published(cls, version: str, path, revision) -> GeneVocab:
    """Shared body of :meth:`geneformer_v1` and :meth:`geneformer_v2`."""
    name = f"geneformer-{version.lower()}"
    env_var = f"GENEFORMER_{version}_DIR"
    files = HUB_DICTIONARIES[version]
    if version == "V1":
        expected = (f"{V1_TSV_FILES['vocab']} or {V1_PKL_FILES['token_dictionary']} + "
                    f"{V1_PKL_FILES['gene_medians']}")
    else:
        expected = (f"{V2_PKL_FILES['token_dictionary']} + {V2_PKL_FILES['gene_medians']} "
                    f"(or the older *_{V2_LEGACY_SUFFIX}.pkl names)")
    how = (
        f"Fix: pass a local folder holding the {version} dictionaries "
        f"(GeneVocab.geneformer_{version.lower()}('path/to/folder') with {expected}, or the "
        f"root of a clone of {GENEFORMER_REPO} made with git-lfs), or set the environment "
        f"variable {env_var} to such a folder, or use the course's teaching vocabulary "
        "GeneVocab.teaching()."
    )
    if path is not None:
        folder = Path(path).expanduser()
        if folder.is_file():
            folder = folder.parent
        if not folder.is_dir():
            raise CourseInputError(f"Geneformer {version} folder not found: {folder}. {how}")
        v = _find_in_folder(cls, folder, name, version)
        if v is None:
            raise CourseInputError(
                f"No {version} dictionaries in {folder}: expected {expected}. {how}"
            )
        return v
    env = os.environ.get(env_var)
    if env:
        folder = Path(env).expanduser()
        v = _find_in_folder(cls, folder, name, version) if folder.is_dir() else None
        if v is None:
            raise CourseInputError(
                f"{env_var}={env} does not hold the {version} dictionaries ({expected}). "
                f"{how}"
            )
        return v
    root = hub_download(
        list(files.values()),
        revision=revision,
        what=f"the Geneformer {version} dictionaries",
        required=[files["token_dictionary"], files["gene_medians"]],
        fix=how,
    )
    paths = {k: root / f for k, f in files.items()}
    return cls.from_files(
        paths["token_dictionary"],
        paths["gene_medians"],
        paths["gene_names"] if paths["gene_names"].is_file() else None,
        name=name,
        ensembl_mapping=paths["ensembl_mapping"] if paths["ensembl_mapping"].is_file() else None,
    )


def _load_teaching(cls) -> GeneVocab:
    """Body of :meth:`GeneVocab.teaching` (reads :data:`_TEACHING_VOCAB`)."""
    if not _TEACHING_VOCAB.is_file():
        raise CourseInputError(
            f"The teaching model is not yet available: {_TEACHING_VOCAB} is missing. Fix: "
            "reinstall course_helpers from the course repository (the file ships with it), "
            "or use GeneVocab.geneformer_v1(...) with the real dictionaries."
        )
    return cls.from_tsv(_TEACHING_VOCAB, name="teaching")
