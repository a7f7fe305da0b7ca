"""A queue of photos processed one at a time by a single worker thread (the model is not shared
between threads, and one CPU job at a time keeps memory bounded), with finished results kept in
memory under a byte budget until downloaded or forgotten."""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from g2face.types import InputError
from g2face.web.process import Outcome, Upload

log = logging.getLogger("g2face.web")

MAX_FINISHED = 1000  # finished jobs remembered (their ids, messages and results)


class QueueFullError(RuntimeError):
    """More photos waiting than the server accepts at once."""


@dataclass
class Job:
    id: str
    name: str
    action: str
    order: int
    submitted: float = field(default_factory=time.monotonic)
    state: str = "queued"  # queued → running → done | failed
    error: str = ""
    outcome: Outcome | None = None
    upload: Upload | None = None  # dropped (bytes and secret) as soon as the worker is done with it


class JobQueue:
    def __init__(self, process: Callable[[Upload], Outcome], *, max_waiting: int, keep_bytes: int):
        self._process = process
        self._max_waiting = max_waiting
        self._keep_bytes = keep_bytes
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._counter = itertools.count()
        self._worker = threading.Thread(target=self._work, name="g2face-web-worker", daemon=True)
        self._worker.start()

    def submit(self, upload: Upload) -> Job:
        with self._lock:
            waiting = sum(j.state in ("queued", "running") for j in self._jobs.values())
            if waiting >= self._max_waiting:
                raise QueueFullError(
                    f"{upload.name}: {waiting} photos are already waiting; try again when they are done"
                )
            job = Job(
                secrets.token_urlsafe(12), upload.name, upload.action, next(self._counter), upload=upload
            )
            self._jobs[job.id] = job
        self._pending.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many photos will be processed before this one."""
        with self._lock:
            return sum(j.state in ("queued", "running") and j.order < job.order for j in self._jobs.values())

    def forget(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in ("queued", "running"):
                return False
            del self._jobs[job_id]
            return True

    def close(self) -> None:
        self._pending.put(None)
        self._worker.join()

    def _work(self) -> None:
        while (job := self._pending.get()) is not None:
            with self._lock:
                job.state = "running"
            upload, job.upload = job.upload, None
            try:
                outcome, error = self._process(upload), ""
            except InputError as e:
                outcome, error = None, str(e)
            except Exception as e:  # noqa: BLE001 - one bad photo must not stop the server
                log.exception("processing %s failed", job.name)
                outcome, error = None, f"{job.name}: internal error ({type(e).__name__}: {e})"
            finally:
                del upload
            with self._lock:
                job.outcome, job.error = outcome, error
                job.state = "done" if outcome is not None else "failed"
                self._evict()

    def _evict(self) -> None:
        """Drop the oldest finished jobs while the kept results exceed the byte budget or there are
        more than MAX_FINISHED of them."""
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        kept = sum(j.outcome.size for j in finished if j.outcome is not None)
        for job in list(finished):  # oldest first: the dict keeps submission order
            if kept <= self._keep_bytes and len(finished) <= MAX_FINISHED:
                break
            kept -= job.outcome.size if job.outcome is not None else 0
            finished.remove(job)
            del self._jobs[job.id]
