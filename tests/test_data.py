import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthetic_stories import make_stories, write_txt

STORIES = make_stories(30, seed=1)


def test_reads_every_local_format(nb, tmp_path):
    write_txt(tmp_path / "a.txt", STORIES)
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in STORIES))
    (tmp_path / "c.json").write_text(json.dumps([{"text": s} for s in STORIES]))
    pq.write_table(pa.table({"text": STORIES}), tmp_path / "d.parquet")
    for name in ("a.txt", "b.jsonl", "c.json", "d.parquet"):
        assert nb.read_stories(tmp_path / name) == STORIES, name


def test_records_without_text_are_a_clear_error(nb, tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"story": "x"}) + "\n")
    with pytest.raises(ValueError, match="'text' field"):
        nb.read_stories(tmp_path / "bad.jsonl")
    pq.write_table(pa.table({"story": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="'text' column"):
        nb.read_stories(tmp_path / "bad.parquet")


def test_validation_files_are_told_apart_by_name(nb, tmp_path):
    write_txt(tmp_path / "TinyStories-train.txt", STORIES[:20])
    write_txt(tmp_path / "TinyStories-valid.txt", STORIES[20:])
    train, val = nb.load_stories(str(tmp_path), n_train=15, n_val=5)
    assert train == STORIES[:15] and val == STORIES[20:25]
    assert not nb.is_validation_file(tmp_path / "interval_stories.txt")
    assert nb.is_validation_file(tmp_path / "validation.parquet")


def test_globs_and_comma_separated_paths(nb, tmp_path):
    write_txt(tmp_path / "train_1.txt", STORIES[:10])
    write_txt(tmp_path / "train_2_lower.txt", [s.lower() for s in STORIES[10:20]])
    write_txt(tmp_path / "val.txt", STORIES[20:])
    train, val = nb.load_stories(f"{tmp_path}/train_1*.txt, {tmp_path / 'val.txt'}", 100, 100)
    assert train == STORIES[:10] and val == STORIES[20:]


def test_without_a_validation_file_the_last_stories_are_held_out(nb, tmp_path):
    write_txt(tmp_path / "stories.txt", STORIES)
    train, val = nb.load_stories(str(tmp_path / "stories.txt"), n_train=20, n_val=5)
    assert train == STORIES[:20] and val == STORIES[20:25]


def test_missing_local_data_says_what_to_do(nb, tmp_path):
    with pytest.raises(FileNotFoundError, match="No TinyStories files found at DATA_PATH"):
        nb.load_stories(str(tmp_path / "nowhere"), 10, 10)


def test_offline_without_local_data_says_to_set_data_path(nb):  # offline: conftest switches the Hub off
    with pytest.raises(RuntimeError, match="set DATA_PATH"):
        nb.load_stories(None, 10, 10)
