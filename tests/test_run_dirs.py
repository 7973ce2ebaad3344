"""One run directory holds one run: another config is refused or (overwrite) cleared, outputs are readable by
others, and 03-05 say which notebook to run first when a file they need is missing."""
import json
import os
import re
import stat
from pathlib import Path

import pytest
from helpers import tiny_config

from blipnb import runs
from blipnb.config import PARAMETERS
from blipnb.errors import USER_ERRORS, MissingRunFile, ParameterError

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def _old_run(run_dir: Path, **overrides):
    """A finished run's files (a config.json and a file or folder for each output) plus a user's own files."""
    cfg = tiny_config(run_dir, **overrides)
    runs.write_json(run_dir / runs.CONFIG, cfg.to_dict())
    for name in (runs.MODEL_DIR, runs.BASE_MODEL_DIR, runs.LOGS_DIR, f"{runs.CHECKPOINTS_DIR}/checkpoint-4"):
        (run_dir / name).mkdir(parents=True)
        (run_dir / name / "weights.bin").write_text("old")
    for name in (runs.DATA_SUMMARY, runs.METRICS, runs.PREDICTIONS, runs.TRAIN_RESULTS, "captions.csv",
                 "figures/gallery.png", "figures/training_curves.png", "figures/decoding_sweep.png",
                 "figures/my_plot.svg", "notebooks/02_finetune.ipynb", "notes.txt", "cache/pixels.npy"):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("old")
    return cfg


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert runs.new_file_mode() == mode
        written = [runs.write_json(tmp_path / "m.json", {"a": 1}), runs.write_jsonl(tmp_path / "p.jsonl", [{}]),
                   runs.write_text(tmp_path / "c.csv", "file_name,caption\n")]
    finally:
        os.umask(old)
    assert [oct(stat.S_IMODE(p.stat().st_mode)) for p in written] == [oct(mode)] * 3


def test_the_same_config_a_resumed_run_and_run_only_settings_go_on(tmp_path):
    cfg = _old_run(tmp_path)
    before = _files(tmp_path)
    for same in (cfg, tiny_config(tmp_path, resume_from_checkpoint="auto"),
                 tiny_config(tmp_path, dataloader_workers=2, logging_steps=5, n_bootstrap=7, do_spice=True),
                 tiny_config(tmp_path, overwrite=True)):  # overwrite clears only a run of another config
        assert runs.prepare_run_dir(same).path == Path(same.run_dir)
    assert _files(tmp_path) == before  # nothing cleared


def test_another_config_is_refused_naming_each_difference(tmp_path):
    _old_run(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(ParameterError) as err:
        runs.prepare_run_dir(tiny_config(tmp_path, learning_rate=1e-4, sample_train=40))
    message = str(err.value)
    assert "data.sample_train: 48 -> 40" in message and "train.learning_rate: 0.001 -> 0.0001" in message
    assert "overwrite" in message and "\n" not in message
    assert _files(tmp_path) == before  # refused before touching anything


def test_overwrite_clears_the_old_runs_outputs_and_nothing_else(tmp_path, capsys):
    _old_run(tmp_path)
    runs.prepare_run_dir(tiny_config(tmp_path, learning_rate=1e-4, overwrite=True))
    assert _files(tmp_path) == {
        runs.DATA_SUMMARY, "figures/gallery.png",  # 01's, which runs just before 02
        "notebooks/02_finetune.ipynb",  # a run-all in progress writes here; run-all clears it itself
        "figures/my_plot.svg", "notes.txt", "cache/pixels.npy",  # not blipnb's outputs, or keyed
    }
    assert "removed the previous run's" in capsys.readouterr().out
    runs.prepare_run_dir(tiny_config(tmp_path, learning_rate=1e-4))  # nothing saved to differ from any more


def test_clear_outputs_for_a_whole_run_keeps_only_unknown_files(tmp_path):
    _old_run(tmp_path)
    removed = runs.clear_outputs(tmp_path, extra=["captions.csv"])
    assert runs.MODEL_DIR in removed and "figures/gallery.png" in removed
    assert _files(tmp_path) == {"figures/my_plot.svg", "notes.txt", "cache/pixels.npy"}


def test_an_unreadable_saved_config_counts_as_another_run(tmp_path):
    (tmp_path / runs.CONFIG).write_text("{not json")
    with pytest.raises(ParameterError, match="config.json is unreadable"):
        runs.prepare_run_dir(tiny_config(tmp_path))
    runs.prepare_run_dir(tiny_config(tmp_path, overwrite=True))
    assert not (tmp_path / runs.CONFIG).exists()


def test_the_lists_of_outputs_and_exemptions_stay_true():
    """Every run-directory name in runs.py is cleared by overwrite (or lies inside the model folder, or is kept on
    purpose); every exempt parameter exists; DATA_FIGURES are exactly the figures notebook 01 writes."""
    inside_model = {"MODEL_CARD", "HANDLER", "SAGEMAKER_ENTRY", "REQUIREMENTS",
                    "COMPARISON", "COMPARISON_REPORT", "COMPARISON_FIGURE",  # and inside a comparison folder
                    "MLFLOW_DB", "MLFLOW_ARTIFACTS",  # and beside the run directories, shared by them
                    "HP_STUDY", "HP_TRIALS", "HP_TRIALS_TABLE", "HP_FIGURE", "HP_BEST", "TRIAL_PREFIX"}  # in a sweep
    names = {k: v for k, v in vars(runs).items() if k.isupper() and isinstance(v, str) and k not in inside_model}
    kept = set(runs.KEYED_BY_CONTENT) | set(runs.RECORDED_BY_HAND)
    assert set(names.values()) <= set(runs.OUTPUTS) | kept, set(names.values()) - set(runs.OUTPUTS)
    assert not set(runs.OUTPUTS) & kept
    assert runs.MAY_DIFFER <= PARAMETERS
    figures = {}
    for nb in sorted(NB_DIR.glob("0*.ipynb")):
        source = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
        figures[nb.stem] = set(re.findall(r'run\.save_figure\(fig, "([^"]+)"\)', source))
    assert figures["01_data_exploration"] == set(runs.DATA_FIGURES)
    assert not set(runs.DATA_FIGURES) & set().union(*(f for n, f in figures.items() if not n.startswith("01")))


def test_blipnb_train_refuses_another_config_in_one_line(tmp_path):
    from blipnb.train import main
    _old_run(tmp_path)
    smoke = NB_DIR / "params" / "smoke.yaml"
    with pytest.raises(SystemExit) as err:
        main(["-f", str(smoke), "-p", "run_dir", str(tmp_path)])
    message = str(err.value.code)
    assert message.startswith("blipnb train: run_dir") and "model.hidden_size: 64 -> 128" in message
    assert (tmp_path / runs.MODEL_DIR / "weights.bin").read_text() == "old"  # nothing trained over it


def test_03_to_05_name_the_notebook_to_run_first(tmp_path):
    from blipnb.evaluation import model_paths
    from blipnb.notebook.analysis import load_predictions

    run = runs.RunDir(tmp_path)
    cfg = tiny_config(tmp_path)
    with pytest.raises(MissingRunFile, match=r"config.json does not exist: run 02_finetune with run_dir="):
        run.require(runs.CONFIG, "02_finetune")
    with pytest.raises(MissingRunFile, match=rf"no fine-tuned model in {re.escape(str(tmp_path / 'model'))}: "
                                             r"run 02_finetune"):
        model_paths(cfg)
    (tmp_path / runs.MODEL_DIR).mkdir()  # 02 stopped before the export
    with pytest.raises(MissingRunFile, match="holds no config.json"):
        model_paths(cfg)
    (tmp_path / runs.MODEL_DIR / "config.json").write_text("{}")
    with pytest.raises(MissingRunFile, match="no base model .* run 02_finetune"):
        model_paths(cfg)  # from_scratch: the baseline is the run's own untrained model
    with pytest.raises(MissingRunFile, match="no predictions of the fine-tuned model in .*: run 03_evaluate"):
        load_predictions(run)
    assert issubclass(MissingRunFile, USER_ERRORS) and issubclass(MissingRunFile, FileNotFoundError)
