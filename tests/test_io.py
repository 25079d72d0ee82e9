import numpy as np
import pytest

from xrdsym.io import append_jsonl_gz, atomic_path, read_jsonl_gz, write_jsonl_gz, write_npy


def test_atomic_file_is_not_written_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_atomic_directory_replaces_the_old_one(tmp_path):
    target = tmp_path / "folder"
    (target / "stale").mkdir(parents=True)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("x")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_jsonl_round_trip(tmp_path):
    records = [{"id": str(i), "value": i} for i in range(5)]
    assert write_jsonl_gz(tmp_path / "r.jsonl.gz", iter(records)) == 5
    assert list(read_jsonl_gz(tmp_path / "r.jsonl.gz")) == records


def test_jsonl_gz_bytes_do_not_depend_on_when_it_was_written(tmp_path, monkeypatch):
    # gzip stamps the time into its header unless told otherwise; DVC hashes the bytes.
    records = [{"id": str(i), "value": i} for i in range(5)]
    written = []
    for when in (1e9, 2e9):
        monkeypatch.setattr("time.time", lambda when=when: when)
        path = tmp_path / str(when) / "r.jsonl.gz"
        write_jsonl_gz(path, records)
        written.append(path.read_bytes())
    assert written[0] == written[1]
    assert list(read_jsonl_gz(path)) == records


def test_append_jsonl_gz_keeps_every_batch_in_order(tmp_path):
    path = tmp_path / "spool.jsonl.gz"
    assert append_jsonl_gz(path, [{"id": "a"}, {"id": "b"}]) == 2
    assert append_jsonl_gz(path, [{"id": "c"}]) == 1
    assert [record["id"] for record in read_jsonl_gz(path)] == ["a", "b", "c"]


def test_write_npy_in_blocks_gives_the_bytes_of_np_save(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.save(tmp_path / "whole.npy", array)
    with open(tmp_path / "blocks.npy", "wb") as handle:
        write_npy(handle, array.shape, array.dtype, [array[:2], array[2:5], array[5:]])
    assert (tmp_path / "blocks.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()
