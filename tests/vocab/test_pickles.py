"""The restricted unpickler: admits exactly what the V1/V2 Geneformer dictionaries need.

Synthetic pickles with the value types of the real files (V1 token ids: Python int and
numpy.int16; V1 medians: numpy.float64; V2: numpy int64/float32/float64 scalars; names and the
Ensembl mapping: str -> str), written with every pickle protocol, load unchanged. Anything else
(arrays, functions, classes, reduce tricks) is refused before it runs.
"""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.vocab import GeneVocab, safe_load_pickle

G1, G2, G3 = "ENSG00000000003", "ENSG00000000005", "ENSG00000141510"
PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)


def _dump(tmp_path, obj, protocol, name="d.pkl"):
    p = tmp_path / name
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    return p


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_v1_and_v2_value_types_load_with_every_protocol(tmp_path, protocol):
    dicts = {
        "v1_tokens": {"<pad>": 0, "<mask>": 1, G1: np.int16(2), G2: np.int16(3)},
        "v2_tokens": {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3, G1: np.int64(4),
                      G2: np.int32(5)},
        "medians": {G1: np.float64(0.1) + np.float64(0.2), G2: np.float32(1.5), G3: 2.0},
        "names": {"TSPAN6": G1, "TNMD": G2},
        "mapping": {G1: G1, "ENSG99999999901": G1, G2: G2},
        "python_ints": {G1: 7, G2: 2**40},
    }
    for name, d in dicts.items():
        got = safe_load_pickle(_dump(tmp_path, d, protocol, f"{name}.pkl"))
        assert got == d
        assert [type(v) for v in got.values()] == [type(v) for v in d.values()], name
    v = GeneVocab.from_files(tmp_path / "v2_tokens.pkl", tmp_path / "medians.pkl",
                             tmp_path / "names.pkl", ensembl_mapping=tmp_path / "mapping.pkl")
    assert v.version == "V2" and v.token_to_id[G1] == 4 and type(v.token_to_id[G1]) is int
    assert v.medians[G1] == 0.1 + 0.2  # bit-exact float64
    assert v.ensembl_mapping == {G1: G1, "ENSG99999999901": G1, G2: G2}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Codecs:
    """A reduce that abuses the admitted _codecs.encode with a non-latin-1 codec."""

    def __reduce__(self):
        import codecs

        return (codecs.encode, (b"x", "zlib_codec"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("obj, what", [
    ({G1: np.arange(3)}, "numpy"),                      # an array: not a dictionary value
    ({G1: collections.OrderedDict()}, "OrderedDict"),   # any other class
    ({G1: print}, "print"),                             # a function
    ({G1: _Codecs()}, ""),                              # codecs beyond latin-1 text
])
def test_anything_else_is_refused(tmp_path, protocol, obj, what):
    with pytest.raises(CourseInputError) as err:
        safe_load_pickle(_dump(tmp_path, obj, protocol))
    assert "NOT loaded" in str(err.value) and what in str(err.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_code_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    p = _dump(tmp_path, {G1: _Evil(marker)}, protocol)
    with pytest.raises(CourseInputError, match="may be unsafe.*system"):
        safe_load_pickle(p)
    with pytest.raises(CourseInputError, match="may be unsafe"):
        GeneVocab.from_files(p, p)
    assert not marker.exists()


def test_git_lfs_pointer_instead_of_a_pickle(tmp_path):
    p = tmp_path / "token_dictionary_gc104M.pkl"
    p.write_text("version https://git-lfs.github.com/spec/v1\n"
                 "oid sha256:67c445f4385127adfc48dcc072320cd65d6822829bf27dd38070e6e787bc597f\n"
                 "size 425590\n")
    with pytest.raises(CourseInputError) as err:
        safe_load_pickle(p)
    msg = str(err.value)
    assert "git-lfs pointer file" in msg and "425,590 bytes" in msg
    assert "install git-lfs" in msg and "`git lfs pull`" in msg
