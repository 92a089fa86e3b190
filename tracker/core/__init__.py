"""The streaming tracker: numpy frames and prompts in, per-object results out (`core.tracker.Tracker`).

Imports neither GStreamer, ZeroMQ nor a web stack, and picks no engine backend: whoever builds a
`Tracker` passes the backends in (`Tracker.build` has tracker/build.py choose them). Nothing is
imported here, so reading `core.options` does not load the model code."""
