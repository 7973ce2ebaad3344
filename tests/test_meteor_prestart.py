"""prestart_meteor: 03 launches METEOR's JVM in its first cell; the next session or process takes that one over."""

import shutil

import pytest

from blipnb.scoring import meteor
from blipnb.scoring.meteor import meteor_process, meteor_session, prestart_meteor

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


def test_prestarted_meteor_is_taken_over_by_the_next_session_and_stopped_with_it():
    assert prestart_meteor()
    warm = meteor._warm[shutil.which("java")]
    assert not prestart_meteor()  # one waiting JVM is enough
    with meteor_session():
        assert not meteor._warm  # the session owns it now
        with meteor_process() as process:
            assert process is warm
    assert not warm.alive()  # stopped when the session ended


def test_prestarted_meteor_serves_one_call_outside_a_session_then_stops():
    assert prestart_meteor()
    warm = meteor._warm[shutil.which("java")]
    with meteor_process() as process:
        assert process is warm
    assert not warm.alive() and not meteor._warm


def test_a_dead_prestarted_jvm_is_not_taken_over():
    assert prestart_meteor()
    warm = meteor._warm[shutil.which("java")]
    warm.close()
    with meteor_session(), meteor_process() as process:
        assert process is not warm and process.alive()
