"""METEOR through pycocoevalcap's Java tool: per-segment statistics once, then exact scores of any sum of them.

The jar in `-stdio` mode answers two requests (the protocol pycocoevalcap's wrapper uses):
- `SCORE ||| ref 1 ||| ... ||| ref n ||| hypothesis` -> one line of sufficient statistics for that segment;
- `EVAL ||| stats ||| stats ...` -> one score per statistics line, then the corpus score of their sum.

The jar's corpus score is its formula applied to the segments' statistics aggregated by `MeteorStats.addStats`:
every field is summed, except that a segment matched exactly (all words of both sides matched, in one chunk)
adds no chunk. `summable` applies that one exception to each segment's line, so the exact corpus METEOR of a
bootstrap resample is the Java tool's score of one line, the weighted sum of the cached lines: one short `EVAL`
line per resample instead of re-sending every segment (1,000 resamples take about a second once the JVM runs).
`tests/test_meteor_exact.py` checks this against the Java tool's own multi-segment `EVAL`, exact matches included.

The JVM takes ~10 s to start (it loads the paraphrase table), so it belongs to a `MeteorScorer` that its owner
creates, starts and closes: 03's evaluation hands one to every score and interval (two models, the human ceiling and
their intervals with one start). A scoring function given none starts and stops its own. `prestart_meteor()`
starts one earlier still, for the evaluation that is handed it to take over.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import weakref

import numpy as np
from pycocoevalcap.meteor import meteor as _pycoco_meteor

_JAR_DIR = os.path.dirname(os.path.abspath(_pycoco_meteor.__file__))
_BATCH = 256  # requests written before their answers are read: keeps both pipes far below their 64 KiB buffers


class MeteorUnavailable(RuntimeError):
    """METEOR's Java process cannot run or died; the message is the one-line reason."""


class MeteorProcess:
    """One running METEOR JVM, with the exact command line of pycocoevalcap's wrapper (`-l en -norm`)."""

    def __init__(self, java: str):
        self.java = java
        # Same arguments as pycocoevalcap.meteor.Meteor, so scores match it exactly.
        self.process = subprocess.Popen(
            [java, "-jar", "-Xmx2G", _pycoco_meteor.METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=_JAR_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.process.poll() is None

    def _ask(self, lines: list[str], answers_per_line) -> list[str]:
        """Send request lines in batches and read each one's answers; any failure kills the JVM and says why."""
        out: list[str] = []
        with self.lock:
            try:
                for start in range(0, len(lines), _BATCH):
                    batch = lines[start:start + _BATCH]
                    self.process.stdin.write("".join(f"{line}\n" for line in batch).encode())
                    self.process.stdin.flush()
                    for line in batch:
                        for _ in range(answers_per_line(line)):
                            answer = self.process.stdout.readline().decode().strip()
                            if not answer:
                                raise EOFError("the process closed its output")
                            out.append(answer)
            except Exception as error:
                raise MeteorUnavailable(f"METEOR's Java process failed: {self._why(error)}") from error
        return out

    def _why(self, error: BaseException) -> str:
        """The error's first line plus Java's first stderr line, after killing the process."""
        self.process.kill()
        self.process.wait()
        text = (str(error).strip().splitlines() or [""])[0]
        java_says = ""
        with contextlib.suppress(Exception):
            java_says = (self.process.stderr.read().decode(errors="replace").strip().splitlines() or [""])[0]
        self.close()
        return f"{type(error).__name__}: {text}".rstrip(": ") + (f" (java: {java_says})" if java_says else "")

    def segment_stats(self, hypotheses: list[str], references: list[list[str]]) -> list[list[float]]:
        """Sufficient statistics of each (hypothesis, its references) segment, cleaned as pycocoevalcap does."""
        # pycocoevalcap's _stat: '|||' removed from the hypothesis and double spaces collapsed once; references
        # are sent as they are (they are PTB-tokenised and whitespace-collapsed before they get here).
        lines = [" ||| ".join(("SCORE", " ||| ".join(refs), hyp.replace("|||", "").replace("  ", " ")))
                 for hyp, refs in zip(hypotheses, references)]
        return [[float(x) for x in answer.split()] for answer in self._ask(lines, lambda _: 1)]

    def evaluate(self, stats: list[list[float]]) -> tuple[list[float], float]:
        """Per-segment scores and the corpus score of these statistics lines (pycocoevalcap's compute_score)."""
        answers = self._ask(["EVAL ||| " + " ||| ".join(map(_stats_line, stats))], lambda _: len(stats) + 1)
        return [float(a) for a in answers[:-1]], float(answers[-1])

    def score_weighted(self, weights, stats) -> np.ndarray:
        """The corpus METEOR of each row of integer segment weights (rows x segments) over these statistics."""
        rows = np.atleast_2d(np.asarray(weights, dtype=np.float64)) @ summable(stats)
        answers = self._ask([f"EVAL ||| {_stats_line(row)}" for row in rows], lambda _: 2)
        return np.array([float(a) for a in answers[1::2]])  # each answer is (segment score, corpus score)

    def close(self) -> None:
        """Stop the JVM and close its pipes (a dead JVM leaves unflushed input: BrokenPipeError is expected)."""
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                stream.close()


# Fields of a statistics line (MeteorStats.toString): test and reference length, function words, then test/ref
# content and function matches for each of the 4 stages, chunks, test and reference word matches.
_TEST_MATCHES, _REF_MATCHES = slice(4, 20, 2), slice(5, 20, 2)
_TEST_LENGTH, _REF_LENGTH, _CHUNKS = 0, 1, 20


def summable(stats) -> np.ndarray:
    """Segment statistics whose plain sum is what the jar aggregates: an exactly matched segment's chunk dropped."""
    stats = np.array(stats, dtype=np.float64, ndmin=2)
    exact = ((stats[:, _TEST_MATCHES].sum(1) == stats[:, _TEST_LENGTH])
             & (stats[:, _REF_MATCHES].sum(1) == stats[:, _REF_LENGTH]) & (stats[:, _CHUNKS] == 1))
    stats[exact, _CHUNKS] = 0.0
    return stats


def _stats_line(values) -> str:
    """Statistics as the jar reads them back: integers without a fraction, other values exactly (repr)."""
    return " ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values)


class MeteorScorer:
    """The owner of one METEOR JVM. `start()` launches it ahead of use (it loads in the background), the first score
    starts it if nobody did, and `close()` (or the end of a `with` block) stops it; used again after that, it starts
    a new one. A JVM that died is not used again: the next score starts a fresh one. One nobody closes is stopped
    when the scorer is collected, or at the latest when Python exits."""

    def __init__(self):
        self._processes: list[MeteorProcess] = []  # the running JVM, if any (a list: the finalizer closes it too)
        self._lock = threading.Lock()
        weakref.finalize(self, _stop, self._processes)

    def start(self) -> MeteorScorer:
        """Launch the JVM now unless one runs; returns self. One that cannot start (no Java, a broken one) is
        reported by the first score, which tries again."""
        java = shutil.which("java")
        if java is not None:
            with self._lock:
                if self._live(java) is None:
                    with contextlib.suppress(Exception):  # reported by the first score, as said
                        self._replace(MeteorProcess(java))
        return self

    def process(self) -> MeteorProcess:
        """The running JVM of the `java` now on PATH, started now if there is none (or it died)."""
        java = shutil.which("java")  # resolved now, so a changed PATH (no Java, a broken one) is honoured
        if java is None:
            raise MeteorUnavailable("needs Java, which was not found on PATH")
        with self._lock:
            return self._live(java) or self._replace(_start(java))

    def running(self) -> bool:
        """Whether this scorer holds a live JVM."""
        with self._lock:
            return bool(self._processes) and self._processes[-1].alive()

    def segment_stats(self, hypotheses: list[str], references: list[list[str]]) -> list[list[float]]:
        """MeteorProcess.segment_stats on this scorer's JVM."""
        return self.process().segment_stats(hypotheses, references)

    def evaluate(self, stats: list[list[float]]) -> tuple[list[float], float]:
        """MeteorProcess.evaluate on this scorer's JVM."""
        return self.process().evaluate(stats)

    def score_weighted(self, weights, stats) -> np.ndarray:
        """MeteorProcess.score_weighted on this scorer's JVM."""
        return self.process().score_weighted(weights, stats)

    def close(self) -> None:
        """Stop the JVM, if one runs."""
        with self._lock:
            _stop(self._processes)

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _live(self, java: str) -> MeteorProcess | None:
        process = self._processes[-1] if self._processes else None
        return process if process is not None and process.java == java and process.alive() else None

    def _replace(self, process: MeteorProcess) -> MeteorProcess:
        _stop(self._processes)
        self._processes.append(process)
        return process


def _stop(processes: list[MeteorProcess]) -> None:
    """Close these processes and forget them; also the finalizer of a scorer, so it must not refer to one."""
    while processes:
        processes.pop().close()


def prestart_meteor() -> MeteorScorer:
    """A MeteorScorer whose JVM is launched now, ahead of the scoring that needs it: 03 calls this in its first cell,
    so the JVM loads its tables (~10 s of one core) while imports and loading (one core) leave the other core idle,
    instead of competing with the captioning later. Hand it to `evaluate_run(..., meteor=...)`, which takes it over
    and closes it when done; one nobody takes is stopped when it is closed or collected. A JVM that cannot start is
    reported by the first score, as without it."""
    return MeteorScorer().start()


@contextlib.contextmanager
def borrow(meteor: MeteorScorer | None):
    """`meteor` when given (its owner closes it), else a MeteorScorer of the block's own, closed when it ends."""
    if meteor is not None:
        yield meteor
        return
    with MeteorScorer() as own:
        yield own


def _start(java: str) -> MeteorProcess:
    try:
        return MeteorProcess(java)
    except OSError as error:
        raise MeteorUnavailable(f"METEOR's Java process failed: {type(error).__name__}: {error}") from error
