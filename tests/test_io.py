"""Crash-safe writes: an interrupted write leaves the previous file intact."""

import json
from pathlib import Path

import pytest

from ssl_emp.io import atomic_write, read_jsonl, write_json


def test_interrupted_write_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json(path, {"top1": 0.5})

    def explode(stream) -> None:
        stream.write(b'{"top1": 0.')
        raise RuntimeError("killed between write and rename")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert json.loads(path.read_text()) == {"top1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_torn_last_jsonl_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]


def test_written_files_are_readable_by_others_and_keep_their_mode(tmp_path: Path) -> None:
    path = tmp_path / "probe.json"
    write_json(path, {"top1": 0.5})
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    write_json(path, {"top1": 0.6})
    assert path.stat().st_mode & 0o777 == 0o600
