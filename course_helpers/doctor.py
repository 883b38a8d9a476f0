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


def doctor(print_report: bool = True) -> dict:
    """Report Python, packages, compute device, memory and offline assets.

    Returns the report as a dict (and prints it unless ``print_report=False``). Instructors can ask
    learners to paste this when something does not work.

    Examples
    --------
    >>> import course_helpers as ch
    >>> report = ch.doctor(print_report=False)
    >>> report["python"].startswith("3.")
    True
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
    report["hf_hub_offline"] = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
    if print_report:
        print("course_helpers environment report")
        for key, value in report.items():
            if key == "packages":
                for p, v in value.items():
                    print(f"  {p:<16} {v}")
            else:
                print(f"{key:<18} {value}")
    return report


def setup(seed: int = 0, *, style: bool = True, quiet: bool = False) -> dict:
    """Per-chapter set-up: seed everything, set a plot style, and report the device.

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
    rep = doctor(print_report=False)
    if not quiet:
        print(f"seed={seed} · device: {rep['device']} · torch {rep['packages']['torch']}")
    return {"seed": seed, "device": rep["device"]}
