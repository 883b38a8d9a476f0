"""Static mode: when an explorer is shown as a PNG figure instead of live controls.

The published book has no kernel, so the explorers embed a PNG of the current view next to the
live widget (or only the figure, when the environment variable :data:`STATIC_ENV` is set, as in
the book build).

Examples
--------
>>> _wants_static(True), _wants_static(False)
(True, False)
>>> import os
>>> os.environ[STATIC_ENV] = "1"; _wants_static(None)
True
>>> del os.environ[STATIC_ENV]; _wants_static(None)
False
"""
from __future__ import annotations

import base64
import os

from .. import plotting

#: Environment variable: set to ``1`` (e.g. in the book build) to display explorers as static
#: PNG figures only, without live controls.
STATIC_ENV = "COURSE_STATIC_WIDGETS"


def _wants_static(static: bool | None) -> bool:
    """``static`` if given, else whether :data:`STATIC_ENV` asks for static figures."""
    if static is None:
        return os.environ.get(STATIC_ENV, "").strip().lower() in {"1", "true", "yes"}
    return bool(static)


def _static_png(make_figure) -> bytes | None:
    """PNG bytes of ``make_figure()``, or ``None`` if drawing fails (display must not break)."""
    try:
        return plotting.figure_to_png(make_figure(), dpi=80)
    except Exception:  # noqa: BLE001 - never break display because of the fallback
        return None


def _mime_bundle(text: str, widget_bundle: dict | None, png: bytes | None) -> dict:
    """What ``display(..., raw=True)`` shows: text, the widget view and/or the static PNG."""
    bundle = {"text/plain": text}
    if widget_bundle:
        bundle.update(widget_bundle)
        bundle["text/plain"] = text
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle
