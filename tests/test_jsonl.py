"""Resumable JSONL (evaluation/jsonl.py): the one rule by which an evaluation's results and a
round's trees are read back after a kill."""

from __future__ import annotations

import json

from evaluation.jsonl import prepare_append, read_records


def test_a_cut_last_line_is_dropped_and_the_next_append_starts_its_own_line(tmp_path):
    path = tmp_path / "results.jsonl"
    whole = [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in whole) + '{"id": "c", "n"')
    assert list(read_records(path, ("id",))) == whole
    assert prepare_append(path, ("id",)) == 1
    with path.open("a") as f:
        f.write(json.dumps({"id": "c", "n": 3}) + "\n")
    assert [r["id"] for r in read_records(path, ("id",))] == ["a", "b", "c"]


def test_a_complete_last_line_gets_its_newline_and_bad_lines_are_skipped(tmp_path):
    path = tmp_path / "trees.partial.jsonl"
    path.write_text('{"id": "a"}\nnot json\n["a list"]\n{"other": 1}\n{"id": "b"}')
    assert prepare_append(path, ("id",)) == 3  # kept in place, skipped by every read
    assert path.read_text().endswith('{"id": "b"}\n')
    assert [r["id"] for r in read_records(path, ("id",))] == ["a", "b"]
    assert prepare_append(tmp_path / "missing.jsonl") == 0
    assert list(read_records(tmp_path / "missing.jsonl")) == []
