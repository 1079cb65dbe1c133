"""Running decoding jobs: one in this process (:func:`run_job`), several in spawned processes
(:func:`run_parallel`)."""

import json
import time
import traceback
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from tqdm import tqdm

from asrc.core.audio import read_audio
from asrc.core.batching import pad_waveforms
from asrc.core.constants import SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.core.tables import segment_outside
from asrc.decode.ctc import ctm_line, timed_words
from asrc.decode.longform import recognise
from asrc.decode.model_dir import frame_seconds, load_model, model_footprint
from asrc.decode.options import build_decoder
from asrc.decode.plan import JobSpec, make_batches
from asrc.errors import AsrcError

__all__ = ["run_job", "run_parallel"]


def run_job(spec: JobSpec, progress=None) -> dict:
    """Decode one job's utterances into ``job_dir/{text,token,stats.json}`` and mark it done.

    ``progress(n_utts)`` is called after each batch. Returns the job's stats.
    """
    opts = spec.options
    job_dir = Path(spec.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    model_dir = Path(spec.model_dir)
    model = load_model(model_dir)
    tokens = model.tokens
    decoder = build_decoder(tokens, opts)
    min_samples = getattr(getattr(model, "config", None), "receptive_field", 0)

    seconds_per_frame = frame_seconds(model)
    results: Dict[str, Tuple[str, List[str]]] = {}
    ctm: Dict[str, List[str]] = {}
    latencies: Dict[str, float] = {}
    read_s = forward_s = search_s = 0.0
    audio_samples = 0
    for batch, wavs, read_seconds in _batches(spec, min_samples):
        t0 = time.perf_counter() - read_seconds
        padded, lengths = pad_waveforms(wavs)
        t1 = time.perf_counter()
        # split or trimmed at pauses, or too long for one piece: each utterance alone, the long way
        long_input = opts.segment == "vad" or (
            opts.segment == "chunk" and int(lengths.max()) > opts.chunk_seconds * SAMPLE_RATE)
        try:
            with torch.inference_mode():
                if long_input:  # (search time counted as forward time)
                    hyps = [recognise(model, w, decoder, opts.segment, opts.chunk_seconds, opts.context_seconds)
                            for w in wavs]
                else:
                    logits, out_lengths = model(padded, lengths)
        except (ValueError, RuntimeError) as e:
            raise AsrcError(f"model {model_dir} failed on utterances {batch}: {e}") from e
        t2 = time.perf_counter()
        if not long_input:
            hyps = decoder(logits.float(), out_lengths.cpu())
        t3 = time.perf_counter()
        for u, h in zip(batch, hyps):
            results[u] = (h.text, [tokens[i] for i in h.ids])
            ctm[u] = _ctm_lines(u, h, tokens, seconds_per_frame, spec.segments.get(u))
            latencies[u] = t3 - t1
        read_s += t1 - t0
        forward_s += t2 - t1
        search_s += t3 - t2
        audio_samples += int(lengths.sum())
        if progress is not None:
            progress(len(batch))

    with atomic_write(job_dir / "text") as f:
        for u in spec.utts:
            f.write(f"{u} {results[u][0]}".rstrip() + "\n")
    with atomic_write(job_dir / "token") as f:
        for u in spec.utts:
            f.write(f"{u} {' '.join(results[u][1])}".rstrip() + "\n")
    with atomic_write(job_dir / "ctm") as f:
        for u in spec.utts:
            f.writelines(ctm[u])
    stats = {
        "job": spec.index,
        "num_utts": len(spec.utts),
        "audio_seconds": audio_samples / SAMPLE_RATE,
        "read_seconds": read_s,
        "forward_seconds": forward_s,
        "search_seconds": search_s,
        "latency": latencies,
        "model": model_footprint(model_dir, model),
    }
    with atomic_write(job_dir / "stats.json") as f:
        json.dump(stats, f)
    with atomic_write(job_dir / "done") as f:
        f.write(spec.fingerprint + "\n")
    (job_dir / "error.log").unlink(missing_ok=True)
    return stats


def _ctm_lines(u: str, hyp, tokens, seconds_per_frame: float, segment=None) -> List[str]:
    """Kaldi CTM lines of one utterance's words: on its recording's clock when it is a segment."""
    name, offset = (segment[0], segment[1]) if segment else (u, 0.0)
    return [ctm_line(name, *w) for w in timed_words(hyp, tokens, seconds_per_frame, offset)]


def _checked(u: str, w: np.ndarray, min_samples: int) -> torch.Tensor:
    if w.shape[0] < min_samples:
        raise AsrcError(
            f"utterance {u}: {w.shape[0]} samples ({w.shape[0] / SAMPLE_RATE:.3f} s) is shorter than "
            f"the model's receptive field of {min_samples} samples; remove it from the data directory"
        )
    return torch.from_numpy(w)


def _cut(u: str, audio: np.ndarray, start: float, end: float, recording: str) -> np.ndarray:
    """Segment ``u`` (``start``/``end`` seconds, ``end`` -1: to the end) of a recording's samples."""
    n = audio.shape[0]
    if segment_outside(start, end, n, SAMPLE_RATE):
        raise AsrcError(f"utterance {u}: segment {start:g}-{end:g} s is outside its recording {recording} "
                        f"({n / SAMPLE_RATE:.2f} s long)")
    b = n if end < 0 else int(round(end * SAMPLE_RATE))
    return audio[int(round(start * SAMPLE_RATE)):min(b, n)]


def _batches(spec: JobSpec, min_samples: int):
    """``(utterances, waveforms, seconds spent reading)`` per batch. With segments, each recording
    is read once: its segments (of this job) are cut from it and batched together."""
    opts = spec.options

    def read(entry, what):
        return read_audio(entry, what=what, resample=opts.resample, mix_channels=opts.mix_channels)

    if not spec.segments:
        for batch in make_batches(spec.utts, spec.lengths, opts.batch_seconds):
            t0 = time.perf_counter()
            wavs = [_checked(u, read(spec.wav[u], f"utterance {u}"), min_samples) for u in batch]
            yield batch, wavs, time.perf_counter() - t0
        return
    by_recording: Dict[str, List[str]] = {}
    for u in spec.utts:  # longest first, so each recording's list is too
        by_recording.setdefault(spec.wav[u], []).append(u)
    for entry, utts in by_recording.items():
        t0 = time.perf_counter()
        audio = read(entry, f"the recording of utterance {utts[0]}")
        cut = {u: _checked(u, _cut(u, audio, *spec.segments[u][1:], entry), min_samples) for u in utts}
        del audio
        read_seconds = time.perf_counter() - t0
        for batch in make_batches(utts, spec.lengths, opts.batch_seconds):
            yield batch, [cut[u] for u in batch], read_seconds
            read_seconds = 0.0


def _worker(spec: JobSpec, queue):
    """Entry point of a job process: set threads, run, report progress/result/error on ``queue``."""
    torch.set_num_threads(spec.options.threads_per_job)
    try:
        stats = run_job(spec, progress=lambda n: queue.put(("progress", spec.index, n)))
        queue.put(("done", spec.index, stats))
    except BaseException as e:  # reported to the parent, which names the job
        log_path = Path(spec.job_dir) / "error.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(traceback.format_exc(), encoding="utf-8")
        queue.put(("error", spec.index, f"{type(e).__name__}: {e} (traceback in {log_path})"))


def run_parallel(specs: List[JobSpec], total_utts: int, done_utts: int) -> Dict[int, dict]:
    """Run jobs in spawned processes. A failing job does not stop the others: they finish and
    are kept (a rerun resumes), then every failure is raised together."""
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    q = ctx.Queue()
    procs = {s.index: ctx.Process(target=_worker, args=(s, q), daemon=True) for s in specs}
    for p in procs.values():
        p.start()
    stats: Dict[int, dict] = {}
    errors: Dict[int, str] = {}
    try:
        with tqdm(total=total_utts, initial=done_utts, desc="decoding", unit="utt") as bar:
            while len(stats) + len(errors) < len(specs):
                try:
                    kind, job, payload = q.get(timeout=1.0)
                except queue_mod.Empty:
                    for j, p in procs.items():
                        if j not in stats and j not in errors and not p.is_alive():
                            errors[j] = f"process exited (code {p.exitcode}) without reporting"
                    continue
                if kind == "progress":
                    bar.update(payload)
                elif kind == "done":
                    stats[job] = payload
                else:
                    errors[job] = payload
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
    if errors:
        raise AsrcError(
            "decoding failed in " + "; ".join(f"job {j}: {msg}" for j, msg in sorted(errors.items()))
            + f"; the {len(stats)} finished job(s) are kept and a rerun resumes from them"
        )
    return stats
