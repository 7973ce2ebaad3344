import json

import pytest

from blipnb import runs


def test_write_json_is_atomic_and_round_trips(tmp_path):
    p = runs.write_json(tmp_path / "a" / "m.json", {"x": 1.5, "path": tmp_path})
    assert runs.read_json(p) == {"x": 1.5, "path": str(tmp_path)}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]  # no temp file left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    p = runs.write_json(tmp_path / "m.json", {"ok": True})
    with pytest.raises(TypeError):
        runs.write_json(p, {"bad": object()})
    assert runs.read_json(p) == {"ok": True}
    assert len(list(tmp_path.iterdir())) == 1


def test_jsonl_round_trip_and_bad_line_is_named(tmp_path):
    p = runs.write_jsonl(tmp_path / "p.jsonl", [{"a": 1}, {"a": 2}])
    assert runs.read_jsonl(p) == [{"a": 1}, {"a": 2}]
    p.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(ValueError, match="line 2"):
        runs.read_jsonl(p)


def test_require_names_the_notebook_that_writes_the_file(tmp_path):
    run = runs.RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="02_finetune"):
        run.require(runs.MODEL_DIR, "02_finetune")
    assert run.figure("f.png").parent.name == runs.FIGURES_DIR
