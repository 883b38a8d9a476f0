"""The perturb package keeps every old public name; public functions take at most 4 positional args."""
from __future__ import annotations

import inspect

import course_helpers.perturb as pert

OLD_NAMES = {"GeneEffects", "adjust_for_rank", "benjamini_hochberg", "in_silico_perturb",
             "net_shift", "perturb_pairs", "perturbation_stats", "random_gene_null"}


def test_public_names():
    assert OLD_NAMES <= set(pert.__all__)
    assert {"perturb_ids", "summarize_effects", "EffectSummary", "PerturbWarning"} <= set(pert.__all__)
    for name in pert.__all__:
        assert getattr(pert, name).__module__.startswith("course_helpers.perturb.")


def test_at_most_four_positional_parameters():
    for name in pert.__all__:
        obj = getattr(pert, name)
        if inspect.isfunction(obj):
            kinds = [p.kind for p in inspect.signature(obj).parameters.values()]
            n = sum(k == inspect.Parameter.POSITIONAL_OR_KEYWORD for k in kinds)
            assert n <= 4, (name, n)
