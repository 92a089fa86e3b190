"""Shared set-up of the benchmark scenarios: arguments and their output paths, a model with objects present,
prompts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engines.base import PARTS
from tracker.cli.args import image_size
from tracker.client import spawn
from tracker.client.spawn import DaemonProcess
from tracker.core.options import BACKEND_CHOICES, PRECISIONS
from tracker.paths import PathError, check_dir_to_write, check_file_to_write, file_to_write
from tracker.recording.inputs import source_arg

JSON_OUT = file_to_write("results file", "results.json", make_parents=True)  # --out of every scenario


class ScenarioParser(argparse.ArgumentParser):
    """A scenario's options. --quick gives the options named in `set_quick` the values of a short run (a few
    minutes on a 2-core CPU), where the command line leaves them at their defaults; its help lists them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.quick: dict[str, object] = {}
        self._quick = self.add_argument("--quick", action="store_true", help="a short run")

    def set_quick(self, note: str = "", **values) -> None:
        """values: option dest -> its value under --quick; note: what else --quick changes."""
        self.quick = values
        shown = [f"--{dest.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                 for dest, v in values.items()]
        self._quick.help = "a short run: " + ", ".join([*shown, *filter(None, [note])])

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        if ns.quick:
            for dest, value in self.quick.items():
                if getattr(ns, dest) == self.get_default(dest):
                    setattr(ns, dest, value)
        return ns


def scenario_parser(name: str, doc: str | None, frames: int = 0, quick_frames: int = 0) -> ScenarioParser:
    """Common options; --quick: quick_frames measured frames after 2 warm-up ones (scenarios that measure by time
    call `set_quick` themselves)."""
    p = ScenarioParser(prog=f"samtrack bench {name}", description=doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_t", help="model name (see `samtrack weights list`)")
    p.add_argument("--image-size", type=image_size, default=512, help="model input size (a multiple of 32)")
    p.add_argument("--objects", type=int, nargs="+", default=[1, 2, 4, 8], help="object counts measured")
    p.add_argument("--frames", type=int, default=frames, help="measured frames (after warm-up)")
    p.add_argument("--warmup", type=int, default=5, help="frames run first, reported apart, not in statistics")
    p.add_argument("--width", type=int, default=640, help="frame width of the synthetic scene")
    p.add_argument("--height", type=int, default=480, help="frame height of the synthetic scene")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (pinned, recorded)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--out", type=JSON_OUT, help="JSON path; the PNG goes next to it")
    if quick_frames:
        p.set_quick(frames=quick_frames, warmup=2)
    return p


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """--precision, --backend and --openvino-parts: the engines a bench measures (default: as the daemon picks)."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="the tracker's arithmetic (docs/engines.md)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help="engines (auto: as the daemon picks)")
    p.add_argument("--openvino-parts", nargs="+", choices=PARTS,
                   help="the parts OpenVINO runs, torch the others (default: auto's choice for this CPU, every part "
                        "for --backend openvino): to measure another split than auto's")


def engines_of(model, args):
    """The engines the options name for a built model."""
    from tracker.build import engines_for

    parts = tuple(args.openvino_parts) if args.openvino_parts else None
    return engines_for(model, args.backend, precision=args.precision, threads=args.threads, parts=parts)


def add_source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", type=source_arg(),
                   help="frames from this source (a video file, a recording's directory, any source string) instead "
                        "of the synthetic scene; --width/--height must then be its size")


def outputs(parser: argparse.ArgumentParser, out: str, beside: tuple[str, ...] = (),
            dirs: tuple[str, ...] = ()) -> Path:
    """The results path, checked before the run with the files (`beside`: ".png" replaces the suffix, "-time.png"
    extends the stem) and directories (`dirs`: suffixes) written next to it; one that cannot be written ends the
    command with the parser's error now, not after the measurement."""
    path = Path(out)
    try:
        check_file_to_write(path, "results file", "results.json", make_parents=True)
    except PathError as e:
        parser.error(str(e))
    files = [path.with_suffix(n) if n.startswith(".") else path.with_name(path.stem + n) for n in beside]
    checks = [(f, lambda f: check_file_to_write(f, make_parents=True)) for f in files]
    checks += [(path.with_suffix(s), check_dir_to_write) for s in dirs]
    for target, check in checks:
        try:
            check(target)
        except PathError as e:
            parser.error(f"--out '{path}' also writes '{target}', but {e.problem}: give another --out")
    return path


def object_boxes(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """n boxes tiling the frame, one per object."""
    cols = max(1, int(n ** 0.5 + 0.999))
    rows = (n + cols - 1) // cols
    w, h = width // cols, height // rows
    return [((k % cols) * w + 2, (k // cols) * h + 2, (k % cols + 1) * w - 2, (k // cols + 1) * h - 2)
            for k in range(n)]


def start_daemon(args, source: str, extra: list[str] = ()) -> DaemonProcess:
    """`samtrack serve` as a subprocess on loopback, with the scenario's model, size and threads."""
    return spawn.start_daemon(["--source", source, "--image-size", str(args.image_size), "--model", args.model,
                               "--no-metrics", "--threads", str(args.threads), "--stream", "bench",
                               "--device", args.device, "--log-level", "WARNING", *extra])
