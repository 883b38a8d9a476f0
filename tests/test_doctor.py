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
