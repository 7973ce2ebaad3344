"""METEOR's JVM belongs to a MeteorScorer: prestart_meteor() launches one in 03's first cell, the evaluation that is
handed it takes it over and closes it, one nobody takes is stopped when closed or collected, a dead one is not used."""

import gc
import shutil

import pytest

from blipnb.evaluation import run as evaluation_run
from blipnb.schema import METEOR
from blipnb.scoring import meteor, score_captions
from blipnb.scoring.meteor import MeteorScorer, prestart_meteor

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


def test_a_prestarted_jvm_is_taken_over_by_the_evaluation_handed_it_and_stopped_with_it(monkeypatch):
    warm = prestart_meteor()
    process = warm.process()
    assert process.alive() and warm.start().process() is process  # starting again keeps the one that runs
    used = []

    def evaluate(cfg, split, models, model_ids, progress, scorer, train=None):  # what the evaluation scores with
        used.append((scorer, scorer.process()))
        return {}

    monkeypatch.setattr(evaluation_run, "_evaluate", evaluate)
    evaluation_run.evaluate_run(None, None, {}, {}, meteor=warm)
    assert used == [(warm, process)]
    assert not process.alive() and not warm.running()  # stopped when the evaluation ended


def test_an_evaluation_handed_nothing_starts_its_own_before_it_captions_and_stops_it(monkeypatch):
    seen = []
    monkeypatch.setattr(evaluation_run, "_evaluate",
                        lambda *args, **kwargs: seen.append((args[-1], args[-1].running(), args[-1].process())) or {})
    evaluation_run.evaluate_run(None, None, {}, {})
    (scorer, running, process), = seen
    assert running and not process.alive() and not scorer.running()


def test_a_jvm_nobody_takes_is_stopped_when_its_scorer_is_closed_or_collected():
    closed = prestart_meteor()
    process = closed.process()
    closed.close()
    assert not process.alive() and not closed.running()
    dropped = prestart_meteor()
    process = dropped.process()
    del dropped
    gc.collect()
    assert not process.alive()


def test_a_dead_prestarted_jvm_is_not_used():
    with prestart_meteor() as warm:
        dead = warm.process()
        dead.close()
        fresh = warm.process()
        assert fresh is not dead and fresh.alive()
        assert warm.start().process() is fresh
    assert not fresh.alive()


def test_a_caller_passing_no_scorer_gets_a_jvm_of_its_own_for_the_call(monkeypatch):
    started = []
    original = meteor.MeteorProcess.__init__

    def counting(self, java):
        original(self, java)
        started.append(self)

    monkeypatch.setattr(meteor.MeteorProcess, "__init__", counting)
    result = score_captions({"a": "a dog runs"}, {"a": ["a dog runs fast", "a brown dog"]}, do_spice=False)
    assert result["metrics"][METEOR] is not None
    assert len(started) == 1 and not started[0].alive()  # started for the call and stopped after it
    with MeteorScorer() as shared:  # its own scoring calls, without the PTB tokenizer's Java around them
        shared.segment_stats(["a dog runs"], [["a dog runs fast", "a brown dog"]])
        shared.segment_stats(["a cat"], [["a black cat", "a cat sits"]])
        assert len(started) == 2 and shared.running()  # one JVM for both, still the owner's
    assert not started[1].alive()


def test_a_jvm_still_held_when_python_exits_is_stopped():
    import subprocess
    import sys
    import time

    code = ("from blipnb.scoring import prestart_meteor\n"
            "held = prestart_meteor()\n"
            "print(held.process().process.pid, flush=True)\n")
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             timeout=120).stdout.split()[-1])
    deadline = time.monotonic() + 10
    while _exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _exists(pid)


def _exists(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
