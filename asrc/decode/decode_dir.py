"""Decode a Kaldi-style data directory with a model directory.

    decode_dir("data/test_clean", "exp/student_int8", "exp/student_int8/decode_test_clean",
               DecodeOptions(method="beam", lexicon="lm/lexicon.txt", lm="lm/4gram.arpa", nj=2))

Reads ``DATA/wav.scp`` (paths or ``cmd |`` pipes). Utterances are sorted by length and split
over ``nj`` jobs with balanced total audio; each job loads the model, uses
``threads_per_job`` torch threads, and decodes batches of at most ``batch_seconds`` of padded
audio. Output in ``OUT``:

- ``text``: ``utt WORDS...`` in ``wav.scp`` order (an empty hypothesis is ``utt`` alone);
- ``token``: ``utt TOKEN TOKEN ...`` (CTC output tokens, repeats collapsed, blanks removed);
- ``rtf.json`` / ``rtf.log``: audio seconds, compute seconds (model forward + search; audio
  reading excluded and reported apart), RTF, wall-clock RTF, per-utterance latency stats
  (an utterance's latency is the compute time of the batch it was in: use
  ``batch_seconds=0`` for one utterance per batch), model parameters and size on disk;
- ``jobs/JOB/``: each job's utterance list, outputs and ``done`` marker. A rerun skips jobs
  whose ``done`` marker matches the same utterances, model and options, so an interrupted
  decoding resumes where it stopped.

``model`` may also be an ESPnet experiment directory (``config.yaml`` with ESPnet keys); it is
first exported into ``OUT/model`` with ``asrc.models.espnet_dir.export_model_dir``.
"""

import dataclasses
import hashlib
import json
import logging
import math
import os
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from asrc.core.audio import num_samples, read_audio
from asrc.core.batching import pack_padded, pad_waveforms
from asrc.core.constants import SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.core.tables import read_table
from asrc.decode.ctc import BeamSearchDecoder, GreedyDecoder
from asrc.errors import AsrcError

log = logging.getLogger(__name__)

METHODS = ("greedy", "beam")


@dataclass
class DecodeOptions:
    """How to decode. Beam options are ignored by greedy search.

    ``batch_seconds``: maximum padded audio per batch (``batch size x longest utterance``);
    0 decodes one utterance at a time. ``resample`` / ``mix_channels`` allow converting audio
    that is not 16 kHz mono (otherwise an error naming the utterance).
    """

    method: str = "greedy"
    beam_size: int = 50
    beam_threshold: float = 50.0
    lm_weight: float = 2.0
    word_score: float = 0.0
    sil_score: float = 0.0
    lexicon: Optional[str] = None
    lm: Optional[str] = None
    batch_seconds: float = 60.0
    nj: int = 1
    threads_per_job: int = 1
    resample: bool = False
    mix_channels: bool = False

    def validate(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; expected one of {METHODS}")
        if self.nj < 1 or self.threads_per_job < 1:
            raise ValueError(f"nj ({self.nj}) and threads_per_job ({self.threads_per_job}) must be >= 1")
        if self.batch_seconds < 0:
            raise ValueError(f"batch_seconds must be >= 0, got {self.batch_seconds}")
        if self.method == "greedy" and (self.lexicon or self.lm):
            raise ValueError("a lexicon or LM needs method='beam'")
        for what, path in (("lexicon", self.lexicon), ("LM", self.lm)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{what} file {path} does not exist")

    def decoder_fingerprint(self) -> dict:
        """What changes the output (not nj/threads/batching, which only change speed)."""
        keys = ["method", "resample", "mix_channels"]
        if self.method == "beam":
            keys += ["beam_size", "beam_threshold", "lm_weight", "word_score", "sil_score", "lexicon", "lm"]
        d = {k: getattr(self, k) for k in keys}
        for k in ("lexicon", "lm"):
            if d.get(k):
                st = os.stat(d[k])
                d[k] = [os.path.abspath(d[k]), st.st_size, st.st_mtime_ns]
        return d


def build_decoder(tokens: Sequence[str], options: DecodeOptions):
    """The greedy or beam decoder described by ``options``."""
    if options.method == "greedy":
        return GreedyDecoder(tokens)
    return BeamSearchDecoder(
        tokens,
        lexicon=options.lexicon,
        lm=options.lm,
        beam_size=options.beam_size,
        beam_threshold=options.beam_threshold,
        lm_weight=options.lm_weight,
        word_score=options.word_score,
        sil_score=options.sil_score,
    )


# ----------------------------------------------------------------------------------------------
# Model directories


def resolve_model_dir(model, out_dir) -> Path:
    """An asrc model directory for ``model``: itself, or an export of an ESPnet experiment.

    Raises:
        FileNotFoundError: ``model`` does not exist.
        AsrcError: neither a model directory nor an ESPnet experiment, or the ESPnet exporter
            is not available.
    """
    from asrc.models.io import is_espnet_experiment, is_model_dir

    model = Path(model)
    if not model.exists():
        raise FileNotFoundError(f"model {model} does not exist")
    if is_model_dir(model):
        return model
    if is_espnet_experiment(model):
        exported = Path(out_dir) / "model"
        checkpoints = [p.stat().st_mtime for p in model.glob("*.pth")]
        if is_model_dir(exported) and (exported / "model.pth").stat().st_mtime >= max(checkpoints, default=0):
            log.info("using the model exported earlier from %s: %s", model, exported)
            return exported
        try:
            from asrc.models.espnet_dir import export_model_dir
        except ImportError as e:
            raise AsrcError(
                f"{model} is an ESPnet experiment directory (config.yaml with ESPnet keys), but "
                f"asrc.models.espnet_dir.export_model_dir is not available to convert it ({e}); "
                f"pass an asrc model directory (config.yaml + model.pth + tokens.txt)"
            ) from e
        export_model_dir(model, exported)
        if not is_model_dir(exported):
            raise AsrcError(f"exporting ESPnet experiment {model} did not produce a model directory in {exported}")
        return exported
    missing = [name for name in ("config.yaml", "model.pth") if not (model / name).is_file()]
    raise AsrcError(
        f"{model} is not a model directory (no {' and no '.join(missing)}; needs config.yaml and model.pth) "
        f"nor an ESPnet experiment directory"
    )


def model_footprint(model_dir: Path, model: torch.nn.Module) -> dict:
    """Parameter count and size on disk (``model.pth``, or all files if there is none) in MB."""
    from asrc.models import num_parameters

    weights = model_dir / "model.pth"
    files = [weights] if weights.is_file() else [p for p in model_dir.rglob("*") if p.is_file()]
    return {
        "dir": str(model_dir),
        "params": int(num_parameters(model)),
        "size_mb": sum(p.stat().st_size for p in files) / 1e6,
    }


def load_model(model_dir: Path):
    """``asrc.models.load`` plus the checks decoding needs (a token list)."""
    from asrc import models

    model = models.load(model_dir, map_location="cpu")
    if getattr(model, "tokens", None) is None:
        raise AsrcError(f"{model_dir}: the model has no token list (tokens.txt); cannot turn outputs into text")
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Planning: lengths, jobs, batches


def utterance_lengths(data_dir: Path, wav_scp: Dict[str, str]) -> Dict[str, int]:
    """Samples per utterance, for sorting: ``utt2num_samples``, else ``utt2dur``, else headers."""
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


# ----------------------------------------------------------------------------------------------
# One job


@dataclass
class JobSpec:
    """Everything a (possibly separate) process needs to run one job."""

    index: int
    utts: List[str]
    wav: Dict[str, str]  # utt -> wav.scp entry, for this job's utterances
    lengths: Dict[str, int]
    model_dir: str
    job_dir: str
    options: DecodeOptions
    fingerprint: str


def _job_done(spec: JobSpec) -> bool:
    marker = Path(spec.job_dir) / "done"
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == spec.fingerprint


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

    results: Dict[str, Tuple[str, List[str]]] = {}
    latencies: Dict[str, float] = {}
    read_s = forward_s = search_s = 0.0
    audio_samples = 0
    for batch in make_batches(spec.utts, spec.lengths, opts.batch_seconds):
        t0 = time.perf_counter()
        wavs = []
        for u in batch:
            w = read_audio(
                spec.wav[u], what=f"utterance {u}", resample=opts.resample, mix_channels=opts.mix_channels
            )
            if w.shape[0] < min_samples:
                raise AsrcError(
                    f"utterance {u}: {w.shape[0]} samples ({w.shape[0] / SAMPLE_RATE:.3f} s) is shorter than "
                    f"the model's receptive field of {min_samples} samples; remove it from the data directory"
                )
            wavs.append(torch.from_numpy(w))
        padded, lengths = pad_waveforms(wavs)
        t1 = time.perf_counter()
        try:
            with torch.inference_mode():
                logits, out_lengths = model(padded, lengths)
        except (ValueError, RuntimeError) as e:
            raise AsrcError(f"model {model_dir} failed on utterances {batch}: {e}") from e
        t2 = time.perf_counter()
        hyps = decoder(logits.float(), out_lengths.cpu())
        t3 = time.perf_counter()
        for u, h in zip(batch, hyps):
            results[u] = (h.text, [tokens[i] for i in h.ids])
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


def _run_parallel(specs: List[JobSpec], total_utts: int, done_utts: int) -> Dict[int, dict]:
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


# ----------------------------------------------------------------------------------------------
# The whole directory


def _fingerprint(model_dir: Path, options: DecodeOptions, wav: Dict[str, str]) -> str:
    """Identifies a job's result: model file, output-changing options, utterances and audio."""
    weights = model_dir / "model.pth"
    st = weights.stat() if weights.is_file() else None
    payload = {
        "model": str(model_dir.resolve()),
        "weights": [st.st_size, st.st_mtime_ns] if st else None,
        "options": options.decoder_fingerprint(),
        "wav": list(wav.items()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _latency_stats(values: List[float]) -> dict:
    if not values:
        return {}
    xs = sorted(values)
    return {
        "mean": statistics.fmean(xs),
        "median": statistics.median(xs),
        "p90": xs[min(len(xs) - 1, int(math.ceil(0.9 * len(xs))) - 1)],
        "max": xs[-1],
    }


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
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model_dir(model, out_dir)

    cores = os.cpu_count() or 1
    if options.nj * options.threads_per_job > cores:
        log.warning("nj %d x threads %d exceeds the %d CPU cores: jobs will compete and RTF will suffer",
                    options.nj, options.threads_per_job, cores)
    wall0 = time.perf_counter()
    lengths = utterance_lengths(data_dir, wav_scp)
    jobs = split_jobs(lengths, options.nj)
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
                fingerprint=_fingerprint(model_dir, options, {u: wav_scp[u] for u in utts}),
            )
        )
    finished = [s for s in specs if _job_done(s)]
    todo = [s for s in specs if not _job_done(s)]
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
        stats.update(_run_parallel(todo, len(wav_scp), done_utts))
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

    summary = _summarise(stats, options, wall, resumed=[s.index for s in finished], data_dir=data_dir)
    with atomic_write(out_dir / "rtf.json") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with atomic_write(out_dir / "rtf.log") as f:
        f.write(format_rtf_log(summary))
    return summary


def _summarise(stats: Dict[int, dict], options: DecodeOptions, wall: float, resumed: List[int], data_dir) -> dict:
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
        "latency_seconds": _latency_stats(latencies),
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
