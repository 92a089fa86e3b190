"""The Python client of the daemon: requests (`Client`), results (`Subscriber`), and helpers to start a
daemon as a child process (`spawn`). Speaks protocol v1 through tracker.protocol only."""

from .commands import Client, RemoteError
from .detections import to_detections
from .events import Event, Events
from .results import Answers, Result, StreamEnd, Subscriber

__all__ = ["Answers", "Client", "Event", "Events", "RemoteError", "Result", "StreamEnd", "Subscriber",
           "to_detections"]
