"""The benchmarks (`samtrack bench SCENARIO`).

matplotlib is loaded first, before any benchmark imports pyzmq or GStreamer: imported after both (pyzmq
first, then Gst.init), its C++ extension aborts the process."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot  # noqa: E402,F401
