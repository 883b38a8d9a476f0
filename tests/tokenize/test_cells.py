"""TokenizedCells: the one reader of tokenized cells, for every container type."""
import datasets
import numpy as np
import pandas as pd
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.tokenize import TokenizedCells

IDS = [[5, 6, 7], [8], [9, 10]]
META = {"cell_id": ["a", "b", "c"], "cell_type": ["B", "T", "B"]}


def _containers():
    cols = {"input_ids": IDS, **META}
    return {
        "hf": datasets.Dataset.from_dict(cols),
        "hf_torch": datasets.Dataset.from_dict(cols).with_format("torch"),
        "frame": pd.DataFrame(cols),
        "dict": dict(cols),
    }


@pytest.mark.parametrize("kind", ["hf", "hf_torch", "frame", "dict"])
def test_same_answers_for_every_container(kind):
    cells = TokenizedCells(_containers()[kind])
    assert cells.n == len(cells) == 3
    assert cells.columns == ["input_ids", "cell_id", "cell_type"]
    assert [list(map(int, x)) for x in cells.ids([2, 0])] == [[9, 10], [5, 6, 7]]
    assert cells.ids_of(0).dtype == np.int64 and cells.ids_of(0).tolist() == [5, 6, 7]
    assert cells.ids_of(-1).tolist() == [9, 10]
    assert [a.tolist() for a in cells.all_ids()] == IDS
    assert cells.lengths().tolist() == [3, 1, 2]
    assert cells.column("cell_type") == ["B", "T", "B"]
    assert cells.get("cell_id") == ["a", "b", "c"]
    assert cells.get("donor") is None
    assert cells.meta.columns.tolist() == ["cell_id", "cell_type", "length"]
    assert cells.meta["length"].tolist() == [3, 1, 2]
    assert cells.label(1) == "b" and cells.label(2, "cell_type") == "c (B)"
    assert cells.label(0, "no_such_column") == "a"
    chunks = list(cells.iter_chunks([0, 1, 2], chunk=2))
    assert [len(c) for c in chunks] == [2, 1] and list(map(int, chunks[1][0])) == [9, 10]
    sub = TokenizedCells(cells.subset([2, 0]))
    assert sub.column("cell_id") == ["c", "a"] and sub.ids_of(0).tolist() == [9, 10]
    assert type(cells.subset([0])) is type(cells.dataset)


def test_list_of_id_lists():
    cells = TokenizedCells([np.array([5, 6]), [7]])
    assert cells.columns == ["input_ids"] and cells.n == 2
    assert cells.lengths().tolist() == [2, 1]
    assert cells.label(0) == "cell 0"
    assert cells.meta.columns.tolist() == ["length"]
    assert cells.subset([1]) == [[7]]
    assert cells.get("cell_type") is None
    assert TokenizedCells(([5], [6])).n == 2


def test_length_column_is_used():
    cells = TokenizedCells({"input_ids": [[5, 6]], "length": [7]})
    assert cells.lengths().tolist() == [7]
    assert cells.meta["length"].tolist() == [7]


def test_ids_of_cache_is_bounded():
    cells = TokenizedCells(datasets.Dataset.from_dict({"input_ids": [[i] for i in range(10)]}))
    cells.CACHE_SIZE = 3
    for i in range(10):
        assert cells.ids_of(i).tolist() == [i]
    assert len(cells._cache) == 3
    assert cells.ids_of(9) is cells.ids_of(9)
    assert [a.tolist() for a in cells.all_ids(limit=4)] == [[0], [1], [2], [3]]
    assert cells.ids_of(8).tolist() == [8]  # beyond the bulk read


def test_bad_input_messages():
    with pytest.raises(CourseInputError, match="No cells given"):
        TokenizedCells(None)
    with pytest.raises(CourseInputError, match=r"no 'input_ids' column \(columns: \['x'\]\)"):
        TokenizedCells(datasets.Dataset.from_dict({"x": [1]}))
    with pytest.raises(CourseInputError, match="input_ids"):
        TokenizedCells(pd.DataFrame({"x": [1]}))
    with pytest.raises(CourseInputError, match="input_ids"):
        TokenizedCells({"x": [1]})
    with pytest.raises(CourseInputError, match="one split"):
        TokenizedCells(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1]})}))
    with pytest.raises(CourseInputError, match="has no cells"):
        TokenizedCells([])
    with pytest.raises(CourseInputError, match="Cannot read cells from a int"):
        TokenizedCells(3)
    cells = TokenizedCells({"input_ids": [[5]], "cell_type": ["B"]})
    with pytest.raises(CourseInputError, match=r"no column 'disease' \(columns: \['input_ids', "
                                                r"'cell_type'\]\)"):
        cells.column("disease")
    with pytest.raises(CourseInputError, match="Cell 4 does not exist"):
        cells.ids_of(4)
