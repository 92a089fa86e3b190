"""The house rules of docs/design.md, read from the source: what each room may import, one wire module,
and no import cycle (every import counts, those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tracker", "pipelines", "engines")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved; `from m import x` also
    names m.x, which is a module when x is one)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}


def _room(graph: dict[str, set[str]], prefix: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in graph.items() if m == prefix or m.startswith(prefix + ".")}


def _all_imports(prefix: str) -> dict[str, set[str]]:
    folder = ROOT.joinpath(*prefix.split("."))
    return {_module_name(p): _imports(p) for p in folder.rglob("*.py")}


def _offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {i}" for m, imps in _all_imports(prefix).items() for i in imps
                  if any(i == f or i.startswith(f + ".") for f in forbidden))


def test_tracker_has_its_rooms():
    names = {p.name for p in (ROOT / "tracker").iterdir() if not p.name.startswith("__")}
    assert {"core", "models", "protocol", "daemon", "client", "viewer", "cli", "runner", "broker", "recording",
            "motion", "concepts"} <= names
    assert not [n for n in names if n.endswith("_cmd.py")], names


def test_core_imports_no_transport_source_web_stack_or_concrete_backend():
    forbidden = ("zmq", "pipelines", "aiohttp", "gi", "cv2", "tracker.daemon", "tracker.client", "tracker.viewer",
                 "tracker.cli", "tracker.protocol", "engines.factory", "engines.torch_backend",
                 "engines.onnxruntime_backend", "engines.tensorrt_backend", "onnxruntime", "tensorrt")
    assert _offenders("tracker.core", forbidden) == []


def test_motion_knows_images_and_the_cores_results_only():
    """Carrying masks between key frames is numpy and OpenCV on the core's result types: no model, no transport."""
    assert _offenders("tracker.motion", ("torch", "sam2", "engines", "zmq", "aiohttp", "gi", "pipelines",
                                         "tracker.daemon", "tracker.protocol", "tracker.core.tracker",
                                         "tracker.models")) == []


def test_concepts_are_pure_logic():
    """Concept prompts' matching and lifecycles are numpy and scipy on masks: no model, detector, image library,
    transport, source nor web stack; the daemon calls them, never the reverse."""
    assert _offenders("tracker.concepts", ("torch", "sam2", "transformers", "engines", "cv2", "zmq", "aiohttp", "gi",
                                           "pydantic", "pipelines", "tracker.core", "tracker.models",
                                           "tracker.daemon", "tracker.protocol", "tracker.motion")) == []


def test_pipelines_import_neither_torch_nor_sam2_nor_the_tracker():
    assert _offenders("pipelines", ("torch", "sam2", "tracker", "engines")) == []


def test_engines_know_only_model_pieces():
    assert _offenders("engines", ("tracker", "pipelines", "zmq", "aiohttp")) == []


def test_the_broker_knows_sockets_and_the_protocol_only():
    assert _offenders("tracker.broker", ("torch", "sam2", "pipelines", "engines", "tracker.core", "tracker.models",
                                         "tracker.runner", "tracker.recording", "tracker.daemon.loop",
                                         "tracker.daemon.wiring")) == []


def test_only_the_daemon_wires_source_tracker_and_sockets():
    for room in ("tracker.core", "tracker.models", "tracker.protocol", "tracker.client", "tracker.viewer",
                 "tracker.runner", "tracker.recording", "tracker.motion"):
        assert _offenders(room, ("tracker.daemon",)) == [], room
    assert _offenders("tracker.protocol", ("pipelines", "engines", "tracker.models", "aiohttp")) == []


def test_recording_is_a_room_of_its_own():
    """The recorder, the format and the replay's reading live together; the daemon uses them, never the reverse,
    and neither the recording room nor the offline runner opens sockets."""
    assert _offenders("tracker.recording", ("tracker.daemon", "tracker.runner", "zmq", "aiohttp")) == []
    assert _offenders("tracker.runner", ("zmq",)) == []


def test_only_the_protocol_module_names_the_protocol_version():
    """Every wire message starts with "v": PROTOCOL_VERSION; only tracker/protocol/ writes one."""
    users = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                   if "PROTOCOL_VERSION" in p.read_text() and "protocol" not in p.relative_to(ROOT).parts[:2])
    assert users == []


def test_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert len(state) > 40  # the walk saw the whole tree


def test_building_trackers_comes_before_gstreamer():
    """Tracing a model (OpenVINO's converter, torch's ONNX exporter) crashes once GStreamer's libraries are in the
    process: the command line, the daemon's wiring and replay must not load them before their trackers exist."""
    import subprocess
    import sys

    code = ("import sys\nfor m in ('tracker.cli.main', 'tracker.daemon.wiring', 'tracker.daemon.replay', "
            "'tracker.recording.inputs', 'tracker.runner.track'):\n    __import__(m)\n"
            "assert 'gi' not in sys.modules, [m for m in sys.modules if m.startswith('gi')]")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
