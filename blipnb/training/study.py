"""A sweep's optuna study, kept in SQLite in the sweep's folder (study.db): opened, checked, resumed and read.

A study records the search space and the parameters every trial shares; the same folder with other settings is
refused rather than mixed. A trial a kill left running is marked failed when the sweep goes on, and does not count.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import runs
from ..config import Config
from ..config.search import SearchSpace
from ..errors import ParameterError

STUDY_NAME = "blipnb"
RUN_ONLY = ("run_dir", "preset", "overwrite", "hp_trials", "hp_space", "num_processes", "resume_from_checkpoint")


def study_settings(base: Config, space: SearchSpace) -> dict:
    """What a study must keep to be resumed: the space, and the parameters of what every trial trains (the stages
    that shape training, less how it is run or logged, runs.MAY_DIFFER)."""
    stages = base.to_dict()
    shared = {k: v for stage in runs.TRAINED_BY for k, v in stages[stage].items()
              if k not in RUN_ONLY and k not in runs.MAY_DIFFER}
    return {"space": space.to_dict(), "base": shared}


def open_study(out: Path, base: Config, space: SearchSpace):
    """The sweep's optuna study in out/study.db, created or loaded; a study of another space or config is refused,
    and trials a kill left running are marked failed. Returns (study, storage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / runs.HP_STUDY}")
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="maximize", load_if_exists=True)
    settings = study_settings(base, space)
    if not study.user_attrs:
        for key, value in settings.items():
            study.set_user_attr(key, _jsonable(value))
    elif study.user_attrs != _jsonable(settings):
        changed = sorted(k for k in {**settings["base"], **study.user_attrs.get("base", {})}
                         if settings["base"].get(k) != study.user_attrs.get("base", {}).get(k))
        what = "the search space" if study.user_attrs.get("space") != _jsonable(settings["space"]) else \
            f"the parameters ({', '.join(changed)})"
        raise ParameterError(f"{out} holds a sweep with other settings ({what} differ): give a new --out to start "
                             "another sweep, or the same settings to go on with this one")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        print(f"trial {trial.number} was interrupted before it finished: marked failed, it is not counted")
    return study, storage


def _jsonable(value):
    return json.loads(json.dumps(value))


def trials_done(study) -> int:
    """Trials that count towards the sweep's total: completed and pruned ones."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def load_study(out):
    """The optuna study of the sweep in `out`, or a ParameterError saying there is none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(out) / runs.HP_STUDY
    if not path.is_file():
        raise ParameterError(f"no sweep in {out}: it holds no {runs.HP_STUDY}")
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{path.resolve()}")


def best_trial(out):
    """The sweep's best finished trial in `out` (optuna's FrozenTrial: number, value, params)."""
    study = load_study(out)
    try:
        return study.best_trial
    except ValueError:
        raise ParameterError(f"no trial of the sweep in {out} finished (all were pruned or failed): widen the space "
                             "or run more trials") from None
