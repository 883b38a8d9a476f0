"""Check functions for the course's exercises, one file per chapter.

Each ``check_*`` prints friendly feedback and returns ``True`` or ``False``. They never raise on an
empty or wrong answer: a learner's cell holds a placeholder (``answer = None``) and the notebook must
still run top to bottom. All checks are re-exported here: ``ch.exercises.check_attention(...)``.

Files
-----
_common.py                   feedback printing and safe calls shared by the checks
ch01_foundations.py          chapter 1: attention by hand, rank-value encoding, masked prediction
ch02_data_preparation.py     chapter 2: QC mask, symbol mapping, truncation
ch03_first_network.py        chapter 3: best head, EPR matrix, top target
ch04_transfer_learning.py    chapter 4: trainable parameters, pooled AUC, per-donor accuracy
ch05_troubleshooting.py      chapter 5: batch size for memory, padding, tokenisation fix, partial r
ch06_comparison.py           chapter 6: EPR, best method, program module, ORA p-value, decoys
ch07_case_study.py           chapter 7: DE rank, significant genes, synergy

Examples
--------
>>> from course_helpers import exercises
>>> exercises.check_attention(None)
Not answered yet: write attention(Q, K, V) returning (output, weights).
False
"""
from __future__ import annotations

from .ch01_foundations import (
    check_attention,
    check_masked_prediction,
    check_rank_value_encoding,
    reference_attention,
    reference_rank_value_encoding,
)
from .ch02_data_preparation import (
    check_qc_mask,
    check_symbol_mapping,
    check_truncation_fraction,
)
from .ch03_first_network import (
    check_best_head,
    check_epr_matrix,
    check_top_target,
)
from .ch04_transfer_learning import (
    check_donor_accuracy,
    check_pooled_auc,
    check_trainable_parameters,
    reference_donor_accuracy,
    reference_pooled_auc,
    reference_trainable_parameters,
)
from .ch05_troubleshooting import (
    check_attention_batch_size,
    check_fixed_tokenization,
    check_padding_fraction,
    check_partial_correlation,
    reference_partial_correlation,
)
from .ch06_comparison import (
    check_best_method,
    check_decoy_hits,
    check_epr,
    check_ora_pvalue,
    check_program_module,
    reference_context_scores,
    reference_decoy_hits,
    reference_epr,
    reference_ora_pvalue,
    reference_program_module,
)
from .ch07_case_study import (
    check_de_rank,
    check_significant_genes,
    check_synergy,
    reference_de_ranking,
    reference_significant_genes,
    reference_synergy,
)

__all__ = [  # noqa: RUF022 - in chapter order
    "check_attention",
    "check_masked_prediction",
    "check_rank_value_encoding",
    "reference_attention",
    "reference_rank_value_encoding",
    "check_qc_mask",
    "check_symbol_mapping",
    "check_truncation_fraction",
    "check_best_head",
    "check_epr_matrix",
    "check_top_target",
    "check_donor_accuracy",
    "check_pooled_auc",
    "check_trainable_parameters",
    "reference_donor_accuracy",
    "reference_pooled_auc",
    "reference_trainable_parameters",
    "check_attention_batch_size",
    "check_fixed_tokenization",
    "check_padding_fraction",
    "check_partial_correlation",
    "reference_partial_correlation",
    "check_best_method",
    "check_decoy_hits",
    "check_epr",
    "check_ora_pvalue",
    "check_program_module",
    "reference_context_scores",
    "reference_decoy_hits",
    "reference_epr",
    "reference_ora_pvalue",
    "reference_program_module",
    "check_de_rank",
    "check_significant_genes",
    "check_synergy",
    "reference_de_ranking",
    "reference_significant_genes",
    "reference_synergy",
]
