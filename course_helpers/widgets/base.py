"""What both explorers share: control state, messages, safe callbacks and display.

``_Explorer`` keeps the current control values (``state``), turns bad control values and
failures inside widget callbacks into :attr:`~_Explorer.message` text (never a traceback), and
displays itself as a live ipywidgets view with a static PNG fallback (see ``static.py``).
Subclasses define ``_controls``, ``set``, ``_compute`` (returning a dict with ``"messages"``),
``figure`` and the widget methods ``_build_widget`` / ``_refresh_widget``.
"""
from __future__ import annotations

import traceback
from typing import Any

from .. import plotting
from .._utils import CourseInputError
from .static import _mime_bundle, _static_png, _wants_static


def _whole_number(key: str, value) -> int:
    """A control that must be a whole number (``top_n``, ``n_cells``, ...)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CourseInputError(f"{key}={value!r} must be a whole number.") from None


class _Explorer:
    """Machinery shared by the explorers: state, messages, widget display, static fallback."""

    _controls: tuple[str, ...] = ()

    def __init__(self, static_fallback: bool = True):
        self._state: dict[str, Any] = {}
        self._messages: list[str] = []
        self._widget = None
        self._syncing = False
        self.static_fallback = bool(static_fallback)
        self.last_redraw_s: float | None = None
        self.last_error: str | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The current control values (a copy)."""
        return dict(self._state)

    @property
    def message(self) -> str:
        """The current warning shown in the widget ('' when everything is fine)."""
        msgs = list(self._messages) + list(self._view_messages())
        return "\n".join(dict.fromkeys(m for m in msgs if m))

    def _compute(self) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _view_messages(self) -> list[str]:
        try:
            return self._compute()["messages"]
        except CourseInputError as err:
            return [str(err)]

    def _check_names(self, kwargs: dict) -> None:
        bad = [k for k in kwargs if k not in self._controls]
        if bad:
            raise CourseInputError(
                f"{type(self).__name__}.set() got unknown control(s) {bad}. Controls: "
                f"{', '.join(self._controls)}."
            )

    def _view_or_figure(self, controls: dict):
        """``(view, None)`` for the current controls, or ``(None, figure)`` showing the error."""
        if controls:
            self.set(**controls)
        try:
            return self._compute(), None
        except CourseInputError as err:
            return None, plotting.message_figure(str(err), title=type(self).__name__)

    # -- display ---------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets view (built on first use)."""
        if self._widget is None:
            self._widget = self._build_widget()
            self._refresh_widget()
        return self._widget

    def _build_widget(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _refresh_widget(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _static_png(self) -> bytes | None:
        return _static_png(self.figure)

    def show(self, static: bool | None = None):
        """Display the explorer: live widget, or (``static=True``) the static figure only.

        ``static=None`` follows the environment variable ``COURSE_STATIC_WIDGETS``; otherwise
        the live widget is shown together with a PNG of the current view (pages without a
        kernel show the PNG).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> from course_helpers.widgets import AttentionExplorer
        >>> model = load_model("teaching")
        >>> ex = AttentionExplorer(model, [model.gene_vocab.tokens(["GATA4", "MYH6", "TNNT2"])])
        >>> ex.show(static=True)
        Figure(...)
        >>> type(ex.widget).__name__  # the ipywidgets view that show() displays live
        'VBox'
        """
        from IPython.display import display

        if _wants_static(static):
            display(self.figure())
            return
        try:
            w = self.widget
            wb = w._repr_mimebundle_() if hasattr(w, "_repr_mimebundle_") else None
        except Exception as err:  # noqa: BLE001 - no ipywidgets/comm: fall back to the figure
            self.last_error = f"{type(err).__name__}: {err}"
            wb = None
        png = self._static_png() if (self.static_fallback or not wb) else None
        display(_mime_bundle(repr(self), wb, png), raw=True)

    def _ipython_display_(self):
        self.show()

    def _safe(self, fn, *args, **kwargs):
        """Run a widget callback; turn any exception into a message (never a traceback)."""
        try:
            return fn(*args, **kwargs)
        except CourseInputError as err:
            self._messages = [str(err)]
        except Exception as err:  # noqa: BLE001 - a widget callback must never show a traceback
            self.last_error = traceback.format_exc()
            self._messages = [(f"Something went wrong: {type(err).__name__}: {err}. "
                              "Change a control to try again (details: explorer.last_error).")]
        return None
