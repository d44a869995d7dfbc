import pytest

from mtbrain.data.splitfile import SplitFile, is_split_file, parse_data_arg
from mtbrain.errors import DataError


def test_round_trip_and_parts(tmp_path):
    split = SplitFile(
        data=str(tmp_path), layout="kaggle_bbox", parts={"train": ["a"], "val": ["b"]}
    )
    path = split.write(tmp_path / "split.json")
    assert is_split_file(path)
    back = SplitFile.read(path)
    assert back.parts == split.parts and back.data == str(tmp_path)
    with pytest.raises(DataError, match="no part 'test'.*'train', 'val'"):
        back.part("test", path=path)


def test_parse_data_arg():
    assert parse_data_arg("s/split.json:val") == (parse_data_arg("s/split.json")[0], "val")
    assert parse_data_arg("folder:with:colons") == (parse_data_arg("folder:with:colons")[0], None)


def test_bad_split_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "mtbrain-split",\n "parts": }')
    with pytest.raises(DataError, match=r"bad\.json:2: not valid JSON"):
        SplitFile.read(bad)
    other = tmp_path / "other.json"
    other.write_text('{"images": []}')
    with pytest.raises(DataError, match="other.json: not an mtbrain split file"):
        SplitFile.read(other)
    assert not is_split_file(other)
