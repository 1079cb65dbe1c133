"""Planning the decoding of a data directory: utterance lengths, jobs of balanced audio, batches,
and the fingerprint that tells whether a job's earlier output can be kept."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from asrc.core.audio import is_pipe, num_samples
from asrc.core.batching import pack_padded
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import read_table
from asrc.decode.options import DecodeOptions
from asrc.errors import AsrcError
from asrc.models.wav2vec2 import inference_path

__all__ = ["JobSpec", "job_done", "job_fingerprint", "make_batches", "split_jobs", "utterance_lengths"]





def utterance_lengths(data_dir: Path, wav_scp: Dict[str, str],
                      segments: Optional[Dict[str, Tuple[str, float, float]]] = None) -> Dict[str, int]:
    """Samples per utterance, for sorting: from ``segments`` when given (a segment to the end
    of its recording: from the recording's header), else ``utt2num_samples``, else
    ``utt2dur``, else headers."""
    if segments:
        rest = {rec: None for rec, _, end in segments.values() if end < 0}
        for rec in rest:
            rest[rec] = num_samples(wav_scp[rec], what=f"recording {rec}")
        return {u: int(round((end - start) * SAMPLE_RATE)) if end >= 0
                else max(rest[rec] - int(round(start * SAMPLE_RATE)), 0)
                for u, (rec, start, end) in segments.items()}
    for name, scale in (("utt2num_samples", 1), ("utt2dur", SAMPLE_RATE)):
        path = data_dir / name
        if path.is_file():
            table = read_table(path)
            missing = [u for u in wav_scp if u not in table]
            if missing:
                raise AsrcError(f"{path}: no entry for {len(missing)} utterance(s) of wav.scp, e.g. {missing[:5]}")
            try:
                return {u: int(round(float(table[u]) * scale)) for u in wav_scp}
            except ValueError as e:
                raise AsrcError(f"{path}: non-numeric value: {e}") from e
    lengths = {}
    # A context manager: a failing file clears the bar before its error is printed.
    with tqdm(wav_scp.items(), desc="reading audio lengths", unit="utt", leave=False) as bar:
        for u, spec in bar:
            lengths[u] = num_samples(spec, what=f"utterance {u}")
    return lengths


def split_jobs(lengths: Dict[str, int], nj: int) -> List[List[str]]:
    """Split utterances into ``nj`` jobs of about equal audio (longest first, each to the
    currently lightest job); every job's list is sorted longest first. Deterministic."""
    order = sorted(lengths, key=lambda u: (-lengths[u], u))
    nj = max(1, min(nj, len(order)))
    jobs: List[List[str]] = [[] for _ in range(nj)]
    totals = [0] * nj
    for u in order:
        j = min(range(nj), key=lambda k: (totals[k], k))
        jobs[j].append(u)
        totals[j] += lengths[u]
    return jobs


def make_batches(utts: Sequence[str], lengths: Dict[str, int], batch_seconds: float) -> List[List[str]]:
    """Consecutive batches of a longest-first list whose padded size (count x longest) stays
    within ``batch_seconds``; an utterance longer than that forms a batch on its own."""
    return pack_padded(utts, lengths.__getitem__, batch_seconds * SAMPLE_RATE)


@dataclass
class JobSpec:
    """Everything a (possibly separate) process needs to run one job."""

    index: int
    utts: List[str]
    wav: Dict[str, str]  # utt -> wav.scp entry (its recording's, with segments), for this job's utterances
    lengths: Dict[str, int]
    model_dir: str
    job_dir: str
    options: DecodeOptions
    fingerprint: str
    segments: Dict[str, Tuple[str, float, float]] = field(default_factory=dict)  # utt -> (recording, start, end)


def job_done(spec: JobSpec) -> bool:
    """Whether the job's ``done`` marker holds its fingerprint (same utterances, model, options)."""
    marker = Path(spec.job_dir) / "done"
    if not (Path(spec.job_dir) / "ctm").is_file():  # a job decoded before asrc wrote CTM files
        return False
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == spec.fingerprint


# The small files of a model directory that change what it outputs (asrc.models.io).
_MODEL_TEXT_FILES = ("config.yaml", "tokens.txt", "quantization.yaml")


def _stamp(path: Path) -> Optional[List[int]]:
    """``[size, mtime_ns]`` of a file, None when it is not one."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if path.is_file() else None


def _digest(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def job_fingerprint(model_dir: Path, options: DecodeOptions, wav: Dict[str, str],
                    segments: Optional[Dict[str, Tuple[str, float, float]]] = None) -> str:
    """Identifies a job's result: the model directory's files, output-changing options, the
    utterances and their audio. Files are identified by size and modification time (the
    weights), or content (the small files: config, tokens, quantization); an audio file that
    was replaced or rewritten since (a new mtime or size) makes the job run again. Audio from
    a pipe command is identified by the command only."""
    payload = {
        "model": str(model_dir.resolve()),
        "weights": _stamp(model_dir / "model.pth"),
        "model_files": {name: _digest(model_dir / name) for name in _MODEL_TEXT_FILES},
        "options": options.decoder_fingerprint(),
        "inference": inference_path(),  # ASRC_FAST_PATH=0 or a new fast path gives other numbers
        "wav": list(wav.items()),
        "audio": {spec: _stamp(Path(spec)) for spec in sorted(set(wav.values())) if not is_pipe(spec)},
    }
    if segments:
        payload["segments"] = sorted(segments.items())
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
