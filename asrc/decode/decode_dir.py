"""Decode a Kaldi-style data directory with a model directory.

    decode_dir("data/test_clean", "exp/student_int8", "exp/student_int8/decode_test_clean",
               DecodeOptions(method="beam", lexicon="lm/lexicon.txt", lm="lm/4gram.arpa", nj=2))

Reads ``DATA/wav.scp`` (paths or ``cmd |`` pipes), and ``DATA/segments`` where there is one
(Kaldi's ``utt recording start end``: utterances cut from longer recordings; each job reads a
recording once and cuts its segments from it). Utterances are sorted by length and split
over ``nj`` jobs with balanced total audio; each job loads the model, uses
``threads_per_job`` torch threads, and decodes batches of at most ``batch_seconds`` of padded
audio. Output in ``OUT``:

- ``text``: ``utt WORDS...`` in ``wav.scp`` (or ``segments``) order (an empty hypothesis is ``utt`` alone);
- ``token``: ``utt TOKEN TOKEN ...`` (CTC output tokens, repeats collapsed, blanks removed);
- ``ctm``: ``utt 1 START DURATION WORD CONFIDENCE`` per word (Kaldi's CTM; with ``segments``
  the recording and its time instead of the utterance's), words timed by the output frames of
  their tokens, a word's confidence the lowest posterior of its tokens;
- ``rtf.json`` / ``rtf.log``: audio seconds, compute seconds (model forward + search; audio
  reading excluded and reported apart), RTF, wall-clock RTF, per-utterance latency stats
  (an utterance's latency is the compute time of the batch it was in: use
  ``batch_seconds=0`` for one utterance per batch), model parameters and size on disk;
- ``jobs/JOB/``: each job's utterance list, outputs and ``done`` marker. A rerun skips jobs
  whose ``done`` marker matches the same utterances, model and options, so an interrupted
  decoding resumes where it stopped.

``model`` may also be an ESPnet experiment directory (``config.yaml`` with ESPnet keys); it is
first exported into ``OUT/model`` with ``asrc.models.espnet_dir.export_model_dir``.

The parts: :mod:`asrc.decode.options` (what to decode with), :mod:`asrc.decode.model_dir`
(which model), :mod:`asrc.decode.plan` (jobs and batches), :mod:`asrc.decode.jobs` (running
them, in parallel processes or not), :mod:`asrc.decode.rtf` (the speed report); this module
puts them together and merges the jobs' outputs.
"""

import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, Optional

import torch
from tqdm import tqdm

from asrc.core.files import atomic_write
from asrc.core.tables import read_segments, read_table
from asrc.decode.jobs import run_job, run_parallel
from asrc.decode.model_dir import resolve_model_dir
from asrc.decode.options import DecodeOptions
from asrc.decode.plan import JobSpec, job_done, job_fingerprint, split_jobs, utterance_lengths
from asrc.decode.rtf import format_rtf_log, summarise
from asrc.errors import AsrcError

__all__ = ["decode_dir"]

log = logging.getLogger(__name__)


def decode_dir(data_dir, model, out_dir, options: Optional[DecodeOptions] = None) -> dict:
    """Decode ``data_dir`` with ``model`` into ``out_dir`` (see the module docstring).

    Args:
        data_dir: Kaldi-style directory with ``wav.scp`` (``utt2num_samples`` or ``utt2dur``
            speed up sorting; ``text`` is not needed).
        model: asrc model directory, or ESPnet experiment directory.
        out_dir: output directory.
        options: decoding options (default: greedy, one job).

    Returns:
        The summary written to ``rtf.json``.
    """
    options = options or DecodeOptions()
    options.validate()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not (data_dir / "wav.scp").is_file():
        raise FileNotFoundError(f"{data_dir}: no wav.scp; not a data directory")
    wav_scp = read_table(data_dir / "wav.scp")
    if not wav_scp:
        raise AsrcError(f"{data_dir / 'wav.scp'} is empty")
    empty = [u for u, spec in wav_scp.items() if not spec]
    if empty:
        raise AsrcError(f"{data_dir / 'wav.scp'}: no audio given for {empty[:5]}")
    segments = read_segments(data_dir / "segments", wav_scp) if (data_dir / "segments").is_file() else None
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model_dir(model, out_dir)
    recordings = wav_scp
    if segments:  # from here on, wav_scp maps each utterance to its recording's entry
        wav_scp = {u: recordings[rec] for u, (rec, _, _) in segments.items()}

    cores = os.cpu_count() or 1
    if options.nj * options.threads_per_job > cores:
        log.warning("nj %d x threads %d exceeds the %d CPU cores: jobs will compete and RTF will suffer",
                    options.nj, options.threads_per_job, cores)
    wall0 = time.perf_counter()
    lengths = utterance_lengths(data_dir, recordings, segments)
    jobs = split_jobs(lengths, options.nj)

    def cuts(utts):
        return {u: segments[u] for u in utts} if segments else {}

    specs = []
    for j, utts in enumerate(jobs):
        job_dir = out_dir / "jobs" / f"{j + 1}"
        specs.append(
            JobSpec(
                index=j + 1,
                utts=utts,
                wav={u: wav_scp[u] for u in utts},
                lengths={u: lengths[u] for u in utts},
                model_dir=str(model_dir),
                job_dir=str(job_dir),
                options=options,
                fingerprint=job_fingerprint(model_dir, options, {u: wav_scp[u] for u in utts}, cuts(utts)),
                segments=cuts(utts),
            )
        )
    finished = [s for s in specs if job_done(s)]
    todo = [s for s in specs if not job_done(s)]
    if finished:
        log.info("jobs %s already done; decoding %d remaining job(s)", [s.index for s in finished], len(todo))
    stats: Dict[int, dict] = {}
    for s in finished:
        with open(Path(s.job_dir) / "stats.json", encoding="utf-8") as f:
            stats[s.index] = json.load(f)

    done_utts = sum(len(s.utts) for s in finished)
    if len(todo) == 1 or (todo and options.nj == 1):
        previous = torch.get_num_threads()
        torch.set_num_threads(options.threads_per_job)
        try:
            with tqdm(total=len(wav_scp), initial=done_utts, desc="decoding", unit="utt") as bar:
                for s in todo:
                    stats[s.index] = run_job(s, progress=bar.update)
        finally:
            torch.set_num_threads(previous)
    elif todo:
        stats.update(run_parallel(todo, len(wav_scp), done_utts))
    wall = time.perf_counter() - wall0

    # Merge in wav.scp order.
    merged_text, merged_token = {}, {}
    for s in specs:
        for name, dest in (("text", merged_text), ("token", merged_token)):
            dest.update(read_table(Path(s.job_dir) / name))
    missing = [u for u in wav_scp if u not in merged_text or u not in merged_token]
    if missing:
        raise AsrcError(f"{out_dir}/jobs: no output for {len(missing)} utterance(s), e.g. {missing[:5]}")
    with atomic_write(out_dir / "text") as f:
        f.writelines(f"{u} {merged_text[u]}".rstrip() + "\n" for u in wav_scp)
    with atomic_write(out_dir / "token") as f:
        f.writelines(f"{u} {merged_token[u]}".rstrip() + "\n" for u in wav_scp)
    ctm_lines = []
    for s in specs:
        with open(Path(s.job_dir) / "ctm", encoding="utf-8") as f:
            ctm_lines += [line.split() for line in f if line.strip()]
    with atomic_write(out_dir / "ctm") as f:
        f.writelines(" ".join(x) + "\n" for x in sorted(ctm_lines, key=lambda x: (x[0], float(x[2]))))

    summary = summarise(stats, options, wall, resumed=[s.index for s in finished], data_dir=data_dir)
    with atomic_write(out_dir / "rtf.json") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with atomic_write(out_dir / "rtf.log") as f:
        f.write(format_rtf_log(summary))
    return summary
