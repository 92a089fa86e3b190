"""`samtrack bench SCENARIO [options]`: the benchmarks in bench/ (step, vs-meta, e2e, soak, memory, engines,
shutdown, startup, record, streams, chaos, restart, motion, and gpu: the first run on a CUDA machine)."""

from __future__ import annotations

import argparse
import importlib

SCENARIOS = {"step": "bench.step", "vs-meta": "bench.vs_meta", "e2e": "bench.e2e", "soak": "bench.soak",
             "memory": "bench.memory", "engines": "bench.engines", "shutdown": "bench.shutdown",
             "startup": "bench.startup", "record": "bench.record", "streams": "bench.streams", "chaos": "bench.chaos",
             "restart": "bench.restart", "gpu": "bench.gpu", "motion": "bench.motion"}


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency and memory benchmarks (JSON + PNG under bench-results/)",
                       add_help=False)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of the scenario (see --help after its name)")
    p.set_defaults(func=run_bench)


def run_bench(args) -> int:
    importlib.import_module(SCENARIOS[args.scenario]).main(args.args)
    return 0
