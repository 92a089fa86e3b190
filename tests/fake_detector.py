"""A detector's child process without a detector, for tests of the daemon's side of it (tracker/daemon/detecting.py):
ready at once, every job answered at once with no detection, until None or the pipe closes."""

from __future__ import annotations

from tracker.daemon.detecting import DetectDone, DetectorSettings, jobs


def child(conn, settings: DetectorSettings) -> None:
    conn.send(None)
    for job in jobs(conn):
        conn.send(DetectDone(job.stream, job.frame, job.texts, job.image.shape[:2], (), 1.0))
