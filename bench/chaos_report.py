"""The chaos benchmark's figures, goals and plot, from what its threads recorded."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.chaos_requests import BAD_TIMEOUT_S, REPLY_TIMEOUT_S, Sent, tally, tally_kinds
from bench.common import percentiles, table
from bench.plots import panels
from tracker import protocol as P

GOAL_GAP_FRAMES = 2.0  # after the camera returns, the next result within two of its frame periods
GOAL_RSS_GROWTH = 0.02
GOAL_KILL_TO_READY_S = 15.0
FPS_WINDOW_S = 10.0  # tracked rates over ten seconds: a one-second count of a 1-2 fps stream is mostly noise


@dataclass
class Outage:
    """The RTSP camera was killed at down_mono and serving again at up_mono (0: never restarted)."""

    down_mono: float
    up_mono: float
    instance: int


def camera_returns(outages: list[Outage], seen: list, period_s: float) -> list[dict]:
    """Per outage: the gap from the camera's first frame after its return to the next published result (the
    frames the camera delivered before it, dropped as stale, count a period each), and from the server's
    restart to that result (reconnection included)."""
    out = []
    for o in outages:
        cam = [s for s in seen if s.stream == "cam" and s.instance == o.instance]
        before = [s for s in cam if s.capture_ns < o.down_mono * 1e9]
        after = [s for s in cam if s.capture_ns > o.up_mono * 1e9]
        row = {"down_s": o.up_mono - o.down_mono, "returned": bool(o.up_mono and before and after)}
        if row["returned"]:
            before.sort(key=lambda s: s.capture_ns)
            r0, r1 = before[-1], min(after, key=lambda s: s.capture_ns)
            gap_s = (r1.publish_ns - r1.capture_ns) / 1e9 + max(0, r1.dropped - r0.dropped) * period_s
            tail = before[-11:]
            steady = [(b.publish_ns - a.publish_ns) / 1e9 for a, b in zip(tail, tail[1:])]
            row |= {"gap_ms": 1000 * gap_s, "gap_frames": gap_s / period_s,
                    # the interval between two results of the stream before the outage: what the CPU allows
                    "steady_interval_ms": 1000 * statistics.median(steady) if steady else None,
                    "server_up_to_result_s": r1.publish_ns / 1e9 - o.up_mono}
        out.append(row)
    return out


def longest_silence(seen: list, stream: str) -> float:
    """Longest time between two results of a stream published by the same daemon instance."""
    gaps, last = [0.0], {}
    for s in seen:
        if s.stream == stream:
            if s.instance in last:
                gaps.append((s.publish_ns - last[s.instance]) / 1e9)
            last[s.instance] = s.publish_ns
    return max(gaps)


def rss_growth(samples: list[dict], warmup_fraction: float) -> dict:
    """Growth of the last instance's RSS after warm-up: median of the last 5 % of samples against the 5 % right
    after warm-up (medians: one sample's noise is not growth)."""
    last = max((s["instance"] for s in samples), default=0)
    rss = [s["rss"] for s in samples if s["instance"] == last and s["rss"]]
    if len(rss) < 4:
        return {"growth": None, "samples": len(rss)}
    k0, w = int(len(rss) * warmup_fraction), max(2, len(rss) // 20)
    start, end = statistics.median(rss[k0:k0 + w]), statistics.median(rss[-w:])
    return {"growth": (end - start) / start, "after_warmup_bytes": start, "end_bytes": end, "max_bytes": max(rss),
            "samples": len(rss)}


def stream_rates(samples: list[dict], stream: str, window_s: float = FPS_WINDOW_S) -> list[tuple[float, float]]:
    """(time, tracked frames per second over the last window_s) for one stream, within each daemon instance."""
    counted = [s for s in samples if "streams" in s]
    out, j = [], 0
    for i, b in enumerate(counted):
        while j < i and (counted[j]["instance"] != b["instance"] or b["t"] - counted[j + 1]["t"] >= window_s):
            j += 1
        a = counted[j]
        if a["instance"] == b["instance"] and b["t"] - a["t"] >= window_s:
            out.append((b["t"], (b["streams"][stream]["frames"] - a["streams"][stream]["frames"]) / (b["t"] - a["t"])))
    return out


def answered(seen: list, stream: str) -> dict:
    """Frames of a stream that got an answer, over the frames numbered (every camera frame is numbered when frames
    between key frames are answered by motion), and how they were answered, summed over the daemon's instances."""
    by_instance: dict[int, set[int]] = {}
    for s in seen:
        if s.stream == stream:
            by_instance.setdefault(s.instance, set()).add(s.frame)
    numbered = sum(max(f) - min(f) + 1 for f in by_instance.values())
    got = sum(len(f) for f in by_instance.values())
    first = [s for s in seen if s.stream == stream and s.revision == 0]
    return {"frames_numbered": numbered, "frames_answered": got, "share": got / numbered if numbered else 0.0,
            "first_answers_by_motion": sum(s.source == "motion" for s in first),
            "model_answers": sum(s.source == "model" for s in seen if s.stream == stream)}


def _right_refusal(x: Sent, across_restart: bool) -> bool:
    """A malformed request's reply: an error, not `internal`, and one of the codes right for its fault (a prompt
    queued across a restart may meet the new daemon before its first frame: frame_out_of_window comes first)."""
    if across_restart and x.code == "frame_out_of_window" and "bad_prompt" in x.expected:
        return True
    return x.code not in (None, "internal") and (not x.expected or x.code in x.expected)


def report(args, t0: float, supervisor, sent: list[Sent], valid, checks, log, churn, reloads, outages, samples,
           exit_codes: tuple[int | None, int | None], png: Path) -> dict:
    exit_code, viewer_exit_code = exit_codes
    restarts = [(k["at_mono"], k["at_mono"] + k["kill_to_ready_s"] + 1.0) for k in supervisor.kills] + \
               [(c["at_mono"] - 2.0, c["at_mono"] + 60.0) for c in supervisor.crashes]

    def across_restart(x: Sent) -> bool:
        end = x.sent_mono + (x.latency_s or (REPLY_TIMEOUT_S if x.kind.startswith("valid") else BAD_TIMEOUT_S))
        return any(a <= end and x.sent_mono <= b for a, b in restarts)

    bad = [x for x in sent if x.kind.startswith("bad:")]
    good = [x for x in sent if x.kind.startswith("valid:")]
    prompts = [x for x in good if x.kind.split(":")[1].startswith("add_")]
    prompts_applied = sum(1 for x in prompts if x.latency_s is not None and x.code is None)
    replies = tally(sent)
    unexpected = [f"{x.kind}: {x.code or 'ok'} (expected {' or '.join(x.expected) or 'a documented error'})"
                  for x in bad if x.latency_s is not None and not _right_refusal(x, across_restart(x))]
    down = [(o.down_mono, o.up_mono or float("inf")) for o in outages]
    returns = camera_returns(outages, log.seen, 1.0 / args.camera_fps)
    gaps = [r["gap_frames"] for r in returns if r["returned"]]
    growth = rss_growth(samples, args.warmup_fraction)
    kills = [k["kill_to_ready_s"] for k in supervisor.kills]
    before = sum(len(ids) for k in supervisor.kills for ids in k.get("objects_before", {}).values())
    restored = sum(len(set(k.get("objects_restored", {}).get(s, [])) & set(ids))
                   for k in supervisor.kills for s, ids in k.get("objects_before", {}).items())
    figures = {
        "crashes": len(supervisor.crashes) + len(supervisor.viewer_crashes),
        "daemon_crashes": supervisor.crashes, "viewer_crashes": supervisor.viewer_crashes,
        "tracebacks_in_logs": supervisor.log_lines("Traceback"), "errors_in_logs": supervisor.log_lines("ERROR "),
        "replies_per_code": dict(replies),
        "undocumented_codes": sorted(set(replies) - P.ERROR_CODES - {"ok", "no reply"}),
        "malformed": {"sent": len(bad), "per_kind": dict(tally_kinds(bad)), "unexpected_replies": unexpected},
        "valid": {"sent": len(good), "applied": sum(1 for x in good if x.latency_s is not None and x.code is None),
                  "refused": dict(tally([x for x in good if x.code is not None])),
                  "per_op": dict(tally_kinds(good)), "state_mismatches": valid.mismatches,
                  "prompts_sent": len(prompts), "prompts_applied": prompts_applied,
                  "prompts_sent_while_camera_down": sum(1 for x in prompts if x.stream == "cam" and
                                                        any(a <= x.sent_mono < b for a, b in down)),
                  "prompts_checked_ok": checks.passed, "prompts_check_failed": [asdict(c) for c in checks.failed],
                  "prompts_unchecked": checks.waiting()},
        "unanswered_outside_restarts": [f"{x.kind} at {x.sent_mono - t0:.1f} s" for x in sent
                                        if x.latency_s is None and not across_restart(x)],
        "request_latency": {"valid": percentiles([x.latency_s for x in good if x.latency_s and not across_restart(x)]),
                            "malformed": percentiles([x.latency_s for x in bad
                                                      if x.latency_s and not across_restart(x)])},
        "camera_returns": returns, "camera_gap_frames_max": max(gaps, default=None),
        "pattern_longest_silence_s": longest_silence(log.seen, "pattern"),
        # the model's rate: key frames a second
        "fps_median": {name: statistics.median([r for _, r in stream_rates(samples, name)] or [0.0])
                       for name in ("cam", "pattern")},
        "answered": {name: answered(log.seen, name) for name in ("cam", "pattern")},
        "results_seen": len(log.seen), "seq_gaps_fast_subscriber": log.seq_gaps, "end_messages": log.ends,
        "subscribers": {"joined": churn.joined, "messages": churn.messages},
        "viewer": {"reloads": reloads.reloads, "live_after_reload": reloads.live, "failures": reloads.failures,
                   "skipped": reloads.skipped},
        "kills": supervisor.kills, "ready_s": supervisor.ready_s, "watchdog_sec": supervisor.watchdog_s,
        "objects_restored": restored, "objects_before_kill": before,
        "longest_watchdog_silence_s": supervisor.watchdog_gaps(), "rss": growth, "daemon_exit_code": exit_code,
        "viewer_exit_code": viewer_exit_code,
    }
    goals = {
        "no crashes": figures["crashes"] == 0 and not figures["tracebacks_in_logs"],
        "every reply code documented": not figures["undocumented_codes"],
        "malformed requests get their error": not unexpected,
        "every request answered": not figures["unanswered_outside_restarts"],
        "valid requests applied == sent": figures["valid"]["applied"] == len(good) and not valid.mismatches,
        "every prompt seen in the results after it": checks.passed == prompts_applied and not checks.failed,
        f"camera gap <= {GOAL_GAP_FRAMES:g} frames": bool(gaps) and max(gaps) <= GOAL_GAP_FRAMES,
        f"RSS growth < {100 * GOAL_RSS_GROWTH:g} %": (growth["growth"] or 0.0) < GOAL_RSS_GROWTH
        and growth["growth"] is not None,
        f"SIGKILL to READY < {GOAL_KILL_TO_READY_S:g} s": bool(kills) and max(kills) < GOAL_KILL_TO_READY_S,
        "every object restored after SIGKILL": all(k.get("objects_restored") == k.get("objects_before")
                                                    for k in supervisor.kills),
        "watchdog never starved": all(g < supervisor.watchdog_s for g in figures["longest_watchdog_silence_s"])
        if supervisor.watchdog_s else True,
        "clean exit": exit_code == 0 and viewer_exit_code in (0, None),
    }
    settings = {k: getattr(args, k) for k in ("model", "image_size", "seconds", "flap_every", "down", "kill_at",
                                              "rate", "camera_fps", "pattern_fps", "reload_every", "threads",
                                              "device", "seed")}
    data = {"benchmark": "chaos", "settings": settings, "goals": goals, "figures": figures,
            "samples": [{**s, "t": s["t"] - t0} for s in samples],
            "latency_over_time": [[x.sent_mono - t0, x.latency_s] for x in good if x.latency_s is not None]}
    _plot(data, png)
    _print(figures, goals)
    return data


def _plot(data: dict, path: Path) -> None:
    samples = data["samples"]
    t = [s["t"] for s in samples]
    rss = {"daemon RSS": (t, [s["rss"] / 2**20 if s["rss"] else float("nan") for s in samples])}  # nan: restarting
    fps, reconnects = {}, {}
    counted = [s for s in samples if "streams" in s]  # samples the daemon answered
    for name in ("cam", "pattern"):
        rates = stream_rates(samples, name)
        fps[name] = ([t for t, _ in rates], [r for _, r in rates])
        reconnects[name] = ([s["t"] for s in counted], [s["streams"][name]["reconnects"] for s in counted])
    lat = data["latency_over_time"]
    panels([("daemon RSS", "MiB", rss), ("tracked frames per second", "fps", fps),
            ("source reconnects (per daemon instance)", "count", reconnects),
            ("valid request latency", "ms", {"request": ([x for x, _ in lat], [1000 * y for _, y in lat])})],
           path, dots=("request",))


def _print(figures: dict, goals: dict) -> None:
    v = figures["valid"]
    print(table([[k, "yes" if ok else "NO"] for k, ok in goals.items()], ["goal", "met"]))
    print(f"valid: {v['sent']} sent, {v['applied']} applied, {v['prompts_checked_ok']} prompts seen in results; "
          f"malformed: {figures['malformed']['sent']}; replies {figures['replies_per_code']}")
    print(f"camera gaps (frames): {[round(r.get('gap_frames', -1), 2) for r in figures['camera_returns']]}; "
          f"kill to READY: {[round(k['kill_to_ready_s'], 2) for k in figures['kills']]} s; objects restored after "
          f"the SIGKILL: {figures['objects_restored']}/{figures['objects_before_kill']}; "
          f"RSS growth: {figures['rss']['growth']}")
    print("; ".join(f"{name}: {100 * a['share']:.1f} % of {a['frames_numbered']} frames answered "
                    f"({a['first_answers_by_motion']} first by motion), key frames {figures['fps_median'][name]:.2f}/s"
                    for name, a in figures["answered"].items()))
