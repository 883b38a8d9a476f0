"""Choosing the torch device (:func:`pick_device`: CUDA, then Apple MPS, then CPU).
"""

from __future__ import annotations

from .._utils import CourseInputError


def pick_device(device=None):
    """Choose the torch device to run on: CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    device
        ``None`` (choose automatically) or anything ``torch.device`` accepts (``"cpu"``,
        ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``).

    Returns
    -------
    torch.device

    Raises
    ------
    CourseInputError
        If a device is requested that this machine does not have.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')
    >>> pick_device().type in {"cuda", "mps", "cpu"}
    True
    """
    import torch

    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise CourseInputError(
            f"{device!r} is not a device name. Fix: use device=None (automatic), 'cpu', 'cuda' "
            f"or 'mps'."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CourseInputError(
            "device='cuda' was requested but no CUDA GPU is available here (torch "
            f"{torch.__version__}). Fix: use device=None to pick the best available device, or "
            "device='cpu'; on Colab choose Runtime > Change runtime type > GPU."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CourseInputError(
            f"device={device!r} does not exist: this machine has {torch.cuda.device_count()} "
            "CUDA device(s). Fix: use device='cuda' or device=None."
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise CourseInputError(
                "device='mps' was requested but Apple MPS is not available here. Fix: use "
                "device=None to pick the best available device, or device='cpu'."
            )
    return dev
