"""`samtrack bench SCENARIO [options]`: the benchmarks in bench/, one module each; `samtrack bench --help` lists
them, `samtrack bench SCENARIO --help` gives a scenario's options."""

from __future__ import annotations

import argparse
import importlib
import sys

SCENARIOS = {"step": "bench.step", "vs-meta": "bench.vs_meta", "e2e": "bench.e2e", "soak": "bench.soak",
             "memory": "bench.memory", "engines": "bench.engines", "shutdown": "bench.shutdown",
             "startup": "bench.startup", "record": "bench.record", "streams": "bench.streams", "chaos": "bench.chaos",
             "restart": "bench.restart", "gpu": "bench.gpu", "motion": "bench.motion",
             "concepts": "bench.concepts", "int8": "bench.int8"}
# What each measures, in one line (`samtrack bench --help`; the module's docstring says more).
SUMMARIES = {
    "step": "the tracking step per stage, 1..8 objects, one at a time and batched",
    "vs-meta": "samtrack against Meta's video predictor on the same frames: time, exactness",
    "e2e": "the daemon at a fixed input rate: glass-to-mask latency, drops, fps",
    "soak": "the daemon for a long time: memory growth after warm-up",
    "memory": "memory over a long stream, and per-frame time against Meta's",
    "engines": "the backends compared: encoder, memory attention, full step",
    "shutdown": "seconds from SIGTERM to exit with a step in flight",
    "startup": "seconds to READY and to the first result, cold and warm cache",
    "record": "what `serve --record` costs the step, bytes per frame, replay speed",
    "streams": "N cameras in one daemon against N daemons: memory, fps, latency",
    "chaos": "a soak under failing cameras, hostile requests, subscribers coming and going",
    "restart": "state bytes per object, and a killed daemon's time back to its objects",
    "gpu": "the first run on a CUDA machine: GPU tests and benchmarks, one JSON",
    "motion": "masks carried between key frames against synthetic scenes' true masks, and their cost",
    "concepts": "concept prompts' matching and lifecycles against a truth detector on synthetic scenes",
    "int8": "the encoder quantized to int8 (NNCF) against auto's: time, error, the tolerance contract",
}


class _ListScenarios(argparse.Action):
    """-h/--help before a scenario: every scenario with what it measures."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        parser.exit()


def add_bench_parser(sub) -> None:
    width = max(map(len, SCENARIOS))
    listing = "\n".join(f"  {name:<{width}}  {SUMMARIES[name]}" for name in SCENARIOS)
    p = sub.add_parser("bench", help="latency and memory benchmarks (JSON + PNG under bench-results/)",
                       add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="samtrack bench SCENARIO [options]   (samtrack bench SCENARIO --help: its options)",
                       description=f"scenarios:\n{listing}")
    p.add_argument("-h", "--help", nargs=0, action=_ListScenarios, help="list the scenarios")
    p.add_argument("scenario", nargs="?", choices=list(SCENARIOS), metavar="SCENARIO",
                   help="one of the scenarios above")
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of the scenario (see --help after its name)")
    p.set_defaults(func=run_bench, bench_parser=p)


def run_bench(args) -> int:
    if args.scenario is None:
        args.bench_parser.print_help(sys.stderr)
        print("samtrack bench: error: name a scenario (above)", file=sys.stderr)
        return 2
    importlib.import_module(SCENARIOS[args.scenario]).main(args.args)
    return 0
