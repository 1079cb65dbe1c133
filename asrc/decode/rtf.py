"""The speed report of a decoding: ``rtf.json`` (:func:`summarise`) and ``rtf.log``
(:func:`format_rtf_log`)."""

import dataclasses
import math
import statistics
from typing import Dict, List

from asrc.decode.options import DecodeOptions

__all__ = ["format_rtf_log", "latency_stats", "summarise"]


def latency_stats(values: List[float]) -> dict:
    if not values:
        return {}
    xs = sorted(values)
    return {
        "mean": statistics.fmean(xs),
        "median": statistics.median(xs),
        "p90": xs[min(len(xs) - 1, int(math.ceil(0.9 * len(xs))) - 1)],
        "max": xs[-1],
    }


def summarise(stats: Dict[int, dict], options: DecodeOptions, wall: float, resumed: List[int], data_dir) -> dict:
    audio = sum(s["audio_seconds"] for s in stats.values())
    forward = sum(s["forward_seconds"] for s in stats.values())
    search = sum(s["search_seconds"] for s in stats.values())
    read = sum(s["read_seconds"] for s in stats.values())
    latencies = [v for s in stats.values() for v in s["latency"].values()]
    model = next(iter(stats.values()))["model"]
    return {
        "data_dir": str(data_dir),
        "num_utts": sum(s["num_utts"] for s in stats.values()),
        "audio_seconds": audio,
        "compute_seconds": forward + search,
        "forward_seconds": forward,
        "search_seconds": search,
        "read_seconds": read,
        "rtf": (forward + search) / audio if audio else None,
        "wall_seconds": wall,
        "wall_rtf": wall / audio if audio else None,
        "latency_seconds": latency_stats(latencies),
        "model": model,
        "options": dataclasses.asdict(options),
        "torch_threads_per_job": options.threads_per_job,
        "resumed_jobs": resumed,
    }


def format_rtf_log(summary: dict) -> str:
    """Human-readable version of ``rtf.json``."""
    lat = summary["latency_seconds"]
    opts = summary["options"]
    lines = [
        f"data: {summary['data_dir']}  utterances: {summary['num_utts']}",
        f"model: {summary['model']['dir']}  params: {summary['model']['params']}  size: {summary['model']['size_mb']:.2f} MB",
        f"method: {opts['method']}  nj: {opts['nj']}  threads/job: {opts['threads_per_job']}  "
        f"batch: {opts['batch_seconds']} s of padded audio",
        f"audio: {summary['audio_seconds']:.2f} s  compute: {summary['compute_seconds']:.3f} s "
        f"(forward {summary['forward_seconds']:.3f} s, search {summary['search_seconds']:.3f} s)  "
        f"audio reading: {summary['read_seconds']:.3f} s",
        f"RTF (compute / audio, summed over jobs): {summary['rtf']:.5f}",
        f"wall-clock RTF (whole run incl. loading and reading / audio): {summary['wall_rtf']:.5f}",
    ]
    if lat:
        lines.append(
            "latency per utterance (its batch's compute): "
            f"mean {lat['mean']:.4f} s  median {lat['median']:.4f} s  p90 {lat['p90']:.4f} s  max {lat['max']:.4f} s"
        )
    if summary["resumed_jobs"]:
        lines.append(f"jobs {summary['resumed_jobs']} were finished earlier and not redone (their times are from then)")
    return "\n".join(lines) + "\n"
