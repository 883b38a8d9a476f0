"""The Hugging Face Hub: the pinned Geneformer repository, its file layout, and the one download
path (:func:`hub_download`, with messages that name the real cause of a failure), plus the
git-lfs pointer check."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._utils import CourseInputError

#: Hugging Face repository of the reference Geneformer models and dictionaries.
GENEFORMER_REPO = "ctheodoris/Geneformer"
#: Pinned revision (upstream commit) of :data:`GENEFORMER_REPO` used for every download. The
#: models and dictionaries are identical at every upstream commit from ``ff551ee4`` (2025-06-27)
#: to this one (2026-02-06, "Update geneformer/mtl/train.py (#582)"). Pass ``revision="main"``
#: for the newest files.
GENEFORMER_REVISION = "05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28"
#: Files of the V1 (gc30M) dictionaries inside :data:`GENEFORMER_REPO`.
V1_HUB_FILES = {
    "token_dictionary": "geneformer/gene_dictionaries_30m/token_dictionary_gc30M.pkl",
    "gene_medians": "geneformer/gene_dictionaries_30m/gene_median_dictionary_gc30M.pkl",
    "gene_names": "geneformer/gene_dictionaries_30m/gene_name_id_dict_gc30M.pkl",
    "ensembl_mapping": "geneformer/gene_dictionaries_30m/ensembl_mapping_dict_gc30M.pkl",
}
#: Files of the V2 (gc104M) dictionaries inside :data:`GENEFORMER_REPO`.
V2_HUB_FILES = {
    "token_dictionary": "geneformer/token_dictionary_gc104M.pkl",
    "gene_medians": "geneformer/gene_median_dictionary_gc104M.pkl",
    "gene_names": "geneformer/gene_name_id_dict_gc104M.pkl",
    "ensembl_mapping": "geneformer/ensembl_mapping_dict_gc104M.pkl",
}
#: Dictionary files per model version.
HUB_DICTIONARIES = {"V1": V1_HUB_FILES, "V2": V2_HUB_FILES}


#: First line of a git-lfs pointer file (what a clone without git-lfs holds instead of the data).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"


def check_not_lfs_pointer(path, what: str = "file") -> None:
    r"""Raise :class:`CourseInputError` if ``path`` is a git-lfs pointer instead of real data.

    A clone of the Geneformer repository made without git-lfs holds small text files whose first
    line is ``version https://git-lfs.github.com/spec/v1`` in place of every ``.pkl`` and weight
    file. Reading them fails with baffling errors (``invalid load key 'v'``, "header too
    large"); this check names the real cause.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "token_dictionary_gc104M.pkl"
    >>> _ = p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 425590\n")
    >>> check_not_lfs_pointer(p)
    Traceback (most recent call last):
    ...
    course_helpers._utils.CourseInputError: ... is a git-lfs pointer file ...
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return
    if not head.startswith(LFS_POINTER_PREFIX):
        return
    size = re.search(rb"size (\d+)", head)
    real = f" (the real {what} has {int(size.group(1)):,} bytes)" if size else ""
    raise CourseInputError(
        f"{path} is a git-lfs pointer file ({path.stat().st_size} bytes of text starting with "
        f"'version https://git-lfs.github.com/spec/v1'), not the {what} itself{real}: the "
        "repository was cloned without git-lfs, so every .pkl and weight file is such a "
        "pointer. Fix: install git-lfs and fetch the real files inside the clone: "
        "`git lfs install` then `git lfs pull` (or download with load_model(<name>) / "
        "GeneVocab.geneformer_v1() / GeneVocab.geneformer_v2(), which use the Hugging Face Hub)."
    )


def _download_hub_snapshot(repo_id: str, revision: str, allow_patterns: list[str]) -> Path:
    """Download (or reuse from the cache) the files of ``repo_id`` matching ``allow_patterns``.

    Returns the local folder that mirrors the repository layout. The one place that talks to
    the Hub; tests replace it.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub ships with transformers
        raise CourseInputError(
            "huggingface_hub is not installed, so nothing can be downloaded from the Hub. Fix: "
            "`pip install huggingface_hub`, or use load_model('teaching') / a local folder."
        ) from err
    return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns))


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_error_message(err: BaseException, what: str, revision: str, files: list[str],
                       fix: str = "") -> str:
    """Name the real cause of a failed Hub download (offline, bad revision, missing file ...)."""
    kinds = {c.__name__ for c in type(err).__mro__}
    first = str(err).strip().splitlines()[0][:240] if str(err).strip() else ""
    detail = f"[{type(err).__name__}: {first}]"
    where = f"{GENEFORMER_REPO} at revision {revision}"
    generic = not kinds & {"RevisionNotFoundError", "RepositoryNotFoundError", "EntryNotFoundError"}
    if kinds & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or (generic and _offline_env()):
        if _offline_env():
            cause = (
                "offline mode is on (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1) and these files "
                "are not in the local Hugging Face cache. Fix: unset HF_HUB_OFFLINE and run once "
                "where the Hub is reachable (they are cached after that)"
            )
        else:
            cause = (
                "you appear to be offline: the Hugging Face Hub could not be reached (no "
                "network, a proxy or firewall, or the Hub is down) and the files are not in the "
                "local cache. Fix: run once where "
                "https://huggingface.co is reachable (e.g. Colab) so they are cached"
            )
        cause += "; or use a local copy (see below)."
    elif "RevisionNotFoundError" in kinds:
        cause = (
            f"the revision {revision!r} does not exist in {GENEFORMER_REPO} on the Hugging Face "
            "Hub (a commit of a fork or of a GitHub mirror is not a Hub commit). Fix: use the "
            f"course's pinned revision {GENEFORMER_REVISION[:12]} (the default: leave revision= "
            "out), revision='main' for the newest files, or a commit listed at "
            f"https://huggingface.co/{GENEFORMER_REPO}/commits/main."
        )
    elif "RepositoryNotFoundError" in kinds:
        cause = (
            f"the repository {GENEFORMER_REPO} was not found (renamed, private, or a token "
            "problem). Fix: check https://huggingface.co/" + GENEFORMER_REPO + " in a browser."
        )
    elif kinds & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:  # not Local...
        cause = (
            f"a file was not found at that revision ({', '.join(files[:4])}): the repository's "
            "layout differs there. Fix: use the course's pinned revision (leave revision= out) "
            "or pass a local folder."
        )
    elif kinds & {"ConnectionError", "ConnectError", "TimeoutException", "Timeout",
                  "ConnectTimeout", "ReadTimeout", "gaierror", "URLError", "ProxyError"}:
        cause = (
            "you appear to be offline: the Hugging Face Hub could not be reached (no network, a "
            "proxy or firewall). Fix: "
            "run where https://huggingface.co is reachable, or use a local copy (see below)."
        )
    else:
        cause = "the download failed. Fix: retry; if it keeps failing, use a local copy (below)."
    return f"Could not download {what} from {where}: {cause} {detail}" + (
        f"\n{fix}" if fix else ""
    )


def hub_download(files, *, revision: str | None = None, what: str = "files",
                 required=None, fix: str = "") -> Path:
    """Download (or reuse from the cache) files of :data:`GENEFORMER_REPO`; return the local root.

    ``files`` are repository paths or glob patterns (``"Geneformer-V1-10M/config.json"``). The
    result mirrors the repository layout. Every failure raises
    :class:`~course_helpers._utils.CourseInputError` naming the real cause: offline (or
    ``HF_HUB_OFFLINE``), a revision that does not exist, a file that does not exist at that
    revision (``required`` paths missing after the download), or git-lfs pointers.

    Parameters
    ----------
    files
        Repository paths or patterns to fetch.
    revision
        Commit, branch or tag; default the pinned :data:`GENEFORMER_REVISION`.
    what
        Words for messages (``"model 'geneformer-v1'"``).
    required
        Paths that must exist afterwards (default: every entry of ``files`` without wildcards).
    fix
        Extra advice appended to error messages.

    Examples
    --------
    >>> root = hub_download(list(V1_HUB_FILES.values()), what="the V1 dictionaries")  # doctest: +SKIP
    >>> (root / V1_HUB_FILES["token_dictionary"]).is_file()  # doctest: +SKIP
    True
    """
    rev = revision or GENEFORMER_REVISION
    files = [str(f) for f in files]
    if required is None:
        required = [f for f in files if not any(c in f for c in "*?[")]
    try:
        root = Path(_download_hub_snapshot(GENEFORMER_REPO, rev, files))
    except CourseInputError:
        raise
    except Exception as err:  # network, offline mode, missing revision, ...
        raise CourseInputError(_hub_error_message(err, what, rev, files, fix)) from err
    missing = [f for f in required if not (root / f).is_file()]
    if missing:
        raise CourseInputError(
            f"Could not download {what}: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in {GENEFORMER_REPO} at revision "
            f"{rev} (the repository's layout is different there; upstream renamed its model "
            "folders and dictionaries on 2025-06-18). Fix: use the course's pinned revision "
            f"{GENEFORMER_REVISION[:12]} (leave revision= out), or a local folder."
            + (f"\n{fix}" if fix else "")
        )
    return root
