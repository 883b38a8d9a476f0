"""Environment report and chapter set-up (``ch.doctor()``, ``ch.setup()``)."""
from __future__ import annotations

import os
import platform
import sys

_PACKAGES = (
    "course_helpers", "torch", "transformers", "datasets", "anndata", "scanpy", "numpy",
    "pandas", "networkx", "ipywidgets", "bertviz", "PyWGCNA", "rustscenic", "decoupler",
)


_DISTRIBUTIONS = {"PyWGCNA": "PyWGCNA", "course_helpers": "course_helpers"}


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTIONS.get(name, name))
    except PackageNotFoundError:
        return "not installed"


_HUB_API = "https://huggingface.co/api/models/{repo}/revision/{revision}"


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _probe_hub(url: str, timeout: float) -> int:
    """HTTP status of a GET on ``url`` (raises on network errors)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "course_helpers-doctor"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def check_hub(timeout: float = 3.0) -> str:
    """One line: can the pinned Geneformer revision be reached on the Hugging Face Hub?

    Never takes longer than about ``timeout`` seconds (the request runs in a background thread,
    so a hanging DNS look-up cannot block). With ``HF_HUB_OFFLINE=1`` nothing is contacted.

    Examples
    --------
    >>> check_hub(timeout=2.0).startswith(("reachable", "not reachable", "offline", "reachable,"))
    True
    """
    import threading

    from .vocab import GENEFORMER_REPO, GENEFORMER_REVISION

    if _offline_env():
        return ("offline mode (HF_HUB_OFFLINE=1): the Hub is not contacted; only files already in "
                "the local cache can be loaded")
    url = _HUB_API.format(repo=GENEFORMER_REPO, revision=GENEFORMER_REVISION)
    result: dict = {}

    import http.client

    def probe():
        try:
            result["status"] = _probe_hub(url, timeout)
        except (OSError, ValueError, http.client.HTTPException) as err:  # network, DNS, TLS ...
            result["error"] = f"{type(err).__name__}: {str(err)[:120]}"

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if t.is_alive():
        return (f"not reachable (no answer within {timeout:g} s): you appear to be offline; "
                "load_model('teaching') works offline")
    if "error" in result:
        return (f"not reachable ({result['error']}): you appear to be offline or behind a "
                "proxy; load_model('teaching') works offline")
    status = result.get("status")
    if status == 200:
        return f"reachable; {GENEFORMER_REPO} at the pinned revision was found"
    if status in (401, 404):
        return (f"reachable, but {GENEFORMER_REPO} at revision {GENEFORMER_REVISION[:12]} was not "
                f"found (HTTP {status}); update course_helpers")
    return f"reachable, but it answered HTTP {status}"


def doctor(print_report: bool = True, *, check_hub_access: bool = True,
           timeout: float = 3.0) -> dict:
    """Report Python, packages, compute device, memory, offline assets and Hub access.

    Returns the report as a dict (and prints it unless ``print_report=False``). Instructors can ask
    learners to paste this when something does not work. ``hub_revision`` is the pinned revision
    of ``ctheodoris/Geneformer`` that every download uses; ``hub`` says whether the Hugging Face
    Hub answers (a quick check bounded by ``timeout`` seconds; skipped in offline mode or with
    ``check_hub_access=False``).

    Examples
    --------
    >>> import course_helpers as ch
    >>> report = ch.doctor(print_report=False, check_hub_access=False)
    >>> report["python"].startswith("3."), len(report["hub_revision"])
    (True, 40)
    """
    from pathlib import Path

    report: dict = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_cores": os.cpu_count(),
        "in_colab": "google.colab" in sys.modules,
    }
    try:
        import psutil

        report["memory_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:
        report["memory_gb"] = None
    report["packages"] = {p: _version(p) for p in _PACKAGES}
    try:
        import torch

        if torch.cuda.is_available():
            report["device"] = f"cuda ({torch.cuda.get_device_name(0)})"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            report["device"] = "mps (Apple GPU)"
        else:
            report["device"] = "cpu (fine for every chapter)"
    except ImportError:
        report["device"] = "torch missing: install torch first (see the setup page)"
    assets = Path(__file__).parent / "assets"
    report["teaching_model"] = (assets / "teaching_model" / "model.safetensors").is_file()
    report["teaching_tissue"] = (assets / "tissue").is_dir()
    report["hf_hub_offline"] = _offline_env()
    from .vocab import GENEFORMER_REPO, GENEFORMER_REVISION

    report["hub_repo"] = GENEFORMER_REPO
    report["hub_revision"] = GENEFORMER_REVISION
    report["hub"] = check_hub(timeout) if check_hub_access else "not checked"
    if print_report:
        print("course_helpers environment report")
        for key, value in report.items():
            if key == "packages":
                for p, v in value.items():
                    print(f"  {p:<16} {v}")
            else:
                print(f"{key:<18} {value}")
    return report


def _short_warning(message, category, filename, lineno, line=None, _orig=None):
    """Warnings raised from a notebook cell: print without the kernel's temporary file path."""
    if "ipykernel_" in str(filename) or str(filename).startswith("<ipython-input"):
        return f"{category.__name__}: {message}\n"
    return _orig(message, category, filename, lineno, line)


def setup(seed: int = 0, *, style: bool = True, quiet: bool = False) -> dict:
    """Per-chapter set-up: seed everything, set a plot style, and report the device.

    It also makes warnings raised from notebook cells print as ``UserWarning: message``, without
    the kernel's temporary file path (``/tmp/ipykernel_.../123.py:4``).

    Examples
    --------
    >>> import course_helpers as ch
    >>> info = ch.setup(seed=0, quiet=True)
    >>> info["seed"]
    0
    """
    from ._utils import set_seed

    set_seed(seed)
    if style:
        import matplotlib as mpl

        mpl.rcParams.update({"figure.dpi": 100, "axes.spines.top": False,
                             "axes.spines.right": False, "figure.figsize": (6, 4)})
    import functools
    import warnings

    if getattr(warnings.formatwarning, "func", None) is not _short_warning:
        warnings.formatwarning = functools.partial(_short_warning, _orig=warnings.formatwarning)
    rep = doctor(print_report=False, check_hub_access=False)
    if not quiet:
        print(f"seed={seed} · device: {rep['device']} · torch {rep['packages']['torch']}")
    return {"seed": seed, "device": rep["device"]}
