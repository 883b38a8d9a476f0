import sys

import course_helpers as ch


def test_doctor_reports_packages_and_device(capsys):
    rep = ch.doctor()
    out = capsys.readouterr().out
    assert "environment report" in out
    assert rep["packages"]["torch"].startswith("2.")
    assert rep["device"].startswith(("cpu", "cuda", "mps"))


def test_setup_seeds_numpy():
    import numpy as np

    ch.setup(seed=3, quiet=True)
    a = np.random.rand(3)
    ch.setup(seed=3, quiet=True)
    assert (a == np.random.rand(3)).all()


def test_lazy_submodule_access_and_unknown_name():
    import pytest

    assert ch.CourseInputError.__mro__[1] is ValueError
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ch.nope  # noqa: B018


def test_doctor_still_callable_after_setup_and_submodule_import():
    import importlib

    ch.setup(seed=0, quiet=True)
    importlib.import_module("course_helpers.doctor")
    assert callable(ch.doctor) and callable(ch.setup)
    assert ch.doctor(print_report=False)["packages"]["torch"].startswith("2.")


# --- Hub revision and reachability -----------------------------------------------------------
def test_doctor_reports_pin_and_offline_mode_without_network(monkeypatch):
    doc = sys.modules["course_helpers.doctor"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("the Hub must not be contacted in offline mode")

    monkeypatch.setattr(doc, "_probe_hub", no_network)
    rep = ch.doctor(print_report=False)
    assert rep["hub_revision"] == "05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28"
    assert rep["hub_repo"] == "ctheodoris/Geneformer"
    assert rep["hub"].startswith("offline mode (HF_HUB_OFFLINE=1)")


def test_doctor_hub_unreachable_and_reachable(monkeypatch, capsys):
    import time
    import urllib.error

    doc = sys.modules["course_helpers.doctor"]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    seen = []

    def down(url, timeout):
        seen.append((url, timeout))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(doc, "_probe_hub", down)
    rep = ch.doctor(timeout=0.5)
    assert rep["hub"].startswith("not reachable (URLError") and "offline" in rep["hub"]
    assert seen[0][0].endswith("ctheodoris/Geneformer/revision/"
                               "05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28")
    assert seen[0][1] == 0.5
    assert "hub_revision" in capsys.readouterr().out

    def hangs(url, timeout):
        time.sleep(5)
        return 200

    monkeypatch.setattr(doc, "_probe_hub", hangs)
    t0 = time.perf_counter()
    msg = doc.check_hub(timeout=0.2)
    assert time.perf_counter() - t0 < 2 and msg.startswith("not reachable (no answer within 0.2 s)")
    monkeypatch.setattr(doc, "_probe_hub", lambda url, timeout: 200)
    assert doc.check_hub(timeout=0.2).startswith("reachable; ctheodoris/Geneformer")
    monkeypatch.setattr(doc, "_probe_hub", lambda url, timeout: 404)
    assert "was not found (HTTP 404)" in doc.check_hub(timeout=0.2)
    # setup() never contacts the Hub
    monkeypatch.setattr(doc, "_probe_hub", hangs)
    t0 = time.perf_counter()
    ch.setup(seed=0, quiet=True)
    assert time.perf_counter() - t0 < 2


def test_setup_prints_notebook_warnings_without_kernel_paths():
    import warnings

    ch.setup(seed=0, quiet=True)
    text = warnings.formatwarning("careful", UserWarning, "/tmp/ipykernel_123/456.py", 4)
    assert text == "UserWarning: careful\n"
    other = warnings.formatwarning("careful", UserWarning, "/x/y.py", 4)
    assert "/x/y.py:4" in other
    ch.setup(seed=0, quiet=True)  # idempotent: not wrapped twice
    assert warnings.formatwarning("w", UserWarning, "/tmp/ipykernel_1/2.py", 1) == "UserWarning: w\n"
