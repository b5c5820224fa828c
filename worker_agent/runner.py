"""Runs one function as a subprocess: its own process group, a scrubbed environment, resource
limits and a wall-clock time limit; killed whole when the time is up or the job is lost."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STDERR_TAIL = 4096
# A function that exits with this status failed in a way another run cannot mend (bad input,
# say): the job fails at once instead of being run again while attempts remain.
NO_RETRY_EXIT = 100


@dataclass(frozen=True)
class Limits:
    """Per-function limits. Memory caps the data segment (RLIMIT_DATA), which counts what a
    program allocates but not address space merely reserved (V8 reserves gigabytes)."""

    time: float = 600.0
    cpu: int = 600
    memory: int = 2 * 1024**3
    files: int = 256
    output: int = 1024**3


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None  # None when killed by a signal, or never started
    signal: int | None
    timed_out: bool
    output_too_large: bool
    stopped: bool  # killed because the job was cancelled or lost
    duration: float
    output: Path
    stderr_tail: str
    start_error: str = ""  # why the function could not be started at all

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.output_too_large
                                            or self.stopped)

    @property
    def retryable(self) -> bool:
        """Whether another run might succeed: a time limit, a crash or a non-zero exit might
        not happen again; output past the limit, a program that will not start, or the
        function's own "do not retry" exit status would."""
        return not (self.start_error or self.output_too_large
                    or self.exit_code == NO_RETRY_EXIT)

    def describe(self) -> str:
        if self.start_error:
            return f"cannot start the function: {self.start_error}"
        if self.timed_out:
            return "timeout: the function ran past its time limit and was killed"
        if self.output_too_large:
            return "output_too_large: the function wrote more than the output limit"
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        if self.exit_code == NO_RETRY_EXIT:
            return f"exit code {NO_RETRY_EXIT} (the function asks not to be run again)"
        return f"exit code {self.exit_code}"


def environment(job_id: str, workdir: Path, input_path: Path, output_path: Path) -> dict[str, str]:
    """Only what a function needs: never a token or anything else of the agent's."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "BROKER_JOB_ID": job_id,
        "BROKER_INPUT": str(input_path),
        "BROKER_OUTPUT": str(output_path),
    }


def stderr_path_of(workdir: Path) -> Path:
    """Where the function's stderr goes, as it writes it (the live log reads it there)."""
    return workdir / "stderr"


def _limit(limits: Limits) -> None:
    """Runs in the child before exec."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu + 1))
    resource.setrlimit(resource.RLIMIT_DATA, (limits.memory, limits.memory))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.files, limits.files))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output, limits.output))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(path: Path, size: int = STDERR_TAIL) -> str:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode("utf-8", "replace")


def start_error(program: str, exc: OSError | subprocess.SubprocessError) -> str:
    """What went wrong starting `program`, in one line."""
    if isinstance(exc, subprocess.SubprocessError):  # its limits could not be set
        return f"program {program!r}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"program {program!r} not found"
    if exc.errno == errno.ENOEXEC:
        return f"program {program!r} is not a program this machine runs (a script needs a #! line)"
    if isinstance(exc, PermissionError):
        return f"program {program!r} is not executable (permission denied)"
    return f"program {program!r}: {exc.strerror or exc}"


async def run(argv: list[str], workdir: Path, job_id: str, input_path: Path, limits: Limits,
              stop: asyncio.Event) -> Outcome:
    """Run `argv` in `workdir` with the job's input on stdin; the output is the file the
    function wrote at $BROKER_OUTPUT, or else what it wrote on stdout."""
    output_path = workdir / "output"
    stdout_path, stderr_path = workdir / "stdout", stderr_path_of(workdir)
    started = time.monotonic()
    with input_path.open("rb") as stdin, stdout_path.open("wb") as out, \
            stderr_path.open("wb") as err:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=stdin, stdout=out, stderr=err, cwd=workdir,
                env=environment(job_id, workdir, input_path, output_path),
                start_new_session=True, preexec_fn=lambda: _limit(limits),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return Outcome(exit_code=None, signal=None, timed_out=False,
                           output_too_large=False, stopped=False,
                           duration=time.monotonic() - started, output=stdout_path,
                           stderr_tail="", start_error=start_error(argv[0], exc))
    waiting = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({waiting, stopping}, timeout=limits.time,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        _kill_group(proc.pid)  # the function's own children go too
        code = await waiting
    timed_out = not done
    result = output_path if output_path.exists() else stdout_path
    too_large = code == -signal.SIGXFSZ or any(
        p.exists() and p.stat().st_size >= limits.output for p in (output_path, stdout_path))
    return Outcome(
        exit_code=code if code >= 0 else None, signal=-code if code < 0 else None,
        timed_out=timed_out, output_too_large=too_large, stopped=stop.is_set(),
        duration=time.monotonic() - started, output=result, stderr_tail=_tail(stderr_path),
    )
