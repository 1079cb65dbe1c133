"""Recordings as users have them: silence around the speech, minutes of it. Split or trimmed at
pauses (voice activity detection), or cut in overlapping windows with the CTC logits stitched
frame by frame.

:func:`recognise` decodes one recording in one of three ways (``SEGMENT_MODES``):

- ``none``: the whole recording in one forward, however long;
- ``chunk``: a recording longer than ``chunk_seconds`` in overlapping windows
  (:func:`chunked_forward`, below), a shorter one whole;
- ``vad``: where people speak, found by silero-vad (a small MIT-licensed detector whose weights
  ship inside its wheel). A recording longer than ``chunk_seconds`` is split where nobody
  speaks, each piece decoded on its own (in windows again if still longer than
  ``chunk_seconds``), the texts joined; a shorter one is trimmed to its speech, with a margin.
  A recogniser fine-tuned on single utterances hears single utterances again (what that is
  worth, measured: ``egs/an4/RESULTS.md``, "Silence and long recordings"). Where the detector
  hears no speech the recording is decoded as with ``chunk``: the model decides.

Windows: self-attention costs time quadratic in the input, and a model fine-tuned on utterances of a
few seconds has never attended over minutes. So a recording longer than a window is cut into
windows of ``chunk`` samples that overlap by ``2 x context``; each window runs on its own and
keeps only the frames of its core (the context on either side is seen, not kept, so every kept
frame has heard audio around it), and the cores tile the recording's frames exactly once. The
result has the frames an unchunked forward would have (same count, same time grid), so any
CTC search (greedy, beam, LM) runs on it unchanged; only how much audio each frame's attention
saw differs.

Windows start on the front end's frame grid (multiples of its total stride), and a window of
``(F - 1) x stride + receptive_field`` samples gives exactly the ``F`` frames of the whole
recording that it covers (valid convolutions, no padding). The waveform normalisation of the
model is per window, as in every chunked wav2vec 2.0 pipeline.
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import Tensor

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError

__all__ = ["SEGMENT_MODES", "Window", "chunked_forward", "plan_windows", "recognise", "speech_segments"]

SEGMENT_MODES = ("none", "chunk", "vad")

# silero-vad's settings for splitting at pauses, chosen on AN4 dev joined into long recordings
# (egs/an4 stage 19): a pause of 0.3 s ends a segment, 0.2 s of audio kept on either side.
VAD_THRESHOLD = 0.5
VAD_MIN_SILENCE_MS = 300
VAD_SPEECH_PAD_MS = 200
# A recording no longer than one piece is trimmed, not split: from its first to its last speech
# (each already padded by VAD_SPEECH_PAD_MS), with this much more audio on either side.
TRIM_MARGIN_SECONDS = 0.3

_vad_model = None


@dataclass(frozen=True)
class Window:
    """One window: samples ``[start, end)`` of the recording, giving its frames
    ``[first_frame, first_frame + frames)``, of which ``[keep_from, keep_to)`` (recording frame
    indices) are kept."""

    start: int
    end: int
    first_frame: int
    frames: int
    keep_from: int
    keep_to: int


def plan_windows(num_frames: int, stride: int, receptive_field: int, chunk_samples: int,
                 context_samples: int) -> List[Window]:
    """Windows covering ``num_frames`` frames: cores of equal size (the last may be shorter)
    that tile ``[0, num_frames)``, each with up to ``context`` frames on either side.

    Args:
        num_frames: frames of the whole recording (the model's ``output_lengths``).
        stride, receptive_field: the front end's total stride and receptive field in samples.
        chunk_samples: window length (context included).
        context_samples: audio seen but not kept, on each side of a core.

    Raises:
        ValueError: a window too short for its contexts plus one frame.
    """
    ctx = context_samples // stride
    window_frames = (chunk_samples - receptive_field) // stride + 1
    core = window_frames - 2 * ctx
    if core < 1:
        raise ValueError(
            f"a window of {chunk_samples / SAMPLE_RATE:g} s holds {max(window_frames, 0)} frames, no room for a core "
            f"between two contexts of {context_samples / SAMPLE_RATE:g} s ({ctx} frames each); use a longer window "
            f"or less context")
    out = []
    for a in range(0, num_frames, core):
        b = min(num_frames, a + core)
        wa, wb = max(0, a - ctx), min(num_frames, b + ctx)
        out.append(Window(start=wa * stride, end=(wb - 1) * stride + receptive_field, first_frame=wa,
                          frames=wb - wa, keep_from=a, keep_to=b))
    return out


def chunked_forward(net, wav: Tensor, chunk_seconds: float, context_seconds: float) -> Tuple[Tensor, Tensor]:
    """``net``'s ``(logits [1, T, V], lengths [1])`` for one recording ``wav`` (``[samples]`` or
    ``[1, samples]``, 16 kHz), in windows of ``chunk_seconds`` with ``context_seconds`` on each
    side when it is longer than one window, else in one piece (the same as ``net(wav)``).

    ``net`` is an asrc model: its ``config`` gives the front end's stride and receptive field.
    """
    if wav.dim() == 2:
        if wav.shape[0] != 1:
            raise ValueError(f"one recording at a time, got a batch of {wav.shape[0]}")
        wav = wav[0]
    n = int(wav.shape[0])
    chunk = int(round(chunk_seconds * SAMPLE_RATE))
    config = getattr(net, "config", None)
    if chunk <= 0 or n <= chunk or config is None:
        return net(wav.unsqueeze(0), torch.tensor([n], device=wav.device))
    stride, rf = config.total_stride, config.receptive_field
    num_frames = int(net.output_lengths(torch.tensor([n]))[0])
    windows = plan_windows(num_frames, stride, rf, chunk, int(round(context_seconds * SAMPLE_RATE)))
    pieces = []
    for w in windows:
        piece = wav[w.start:w.end].unsqueeze(0)
        logits, lengths = net(piece, torch.tensor([w.end - w.start], device=wav.device))
        if int(lengths[0]) != w.frames:  # a front end whose frames do not sit on the stride grid
            raise AsrcError(f"chunked decoding: a window of {w.end - w.start} samples gave {int(lengths[0])} frames, "
                            f"expected {w.frames}; decode it whole (segment 'none')")
        pieces.append(logits[:, w.keep_from - w.first_frame:w.keep_to - w.first_frame])
    logits = torch.cat(pieces, dim=1)
    return logits, torch.tensor([logits.shape[1]], device=logits.device)


# The detector hears speech by its level as well as its shape: a quiet recording (its loudest
# samples under -30 dBFS, VAD_QUIET_PEAK) loses its first words or all of them (measured: AN4
# test recordings 45-50 dB down lost "RUBOUT" and more). Such a recording is amplified for the
# detector only, to the loudness of a typical AN4 recording (VAD_TYPICAL_PEAK), at most 60 dB.
VAD_QUIET_PEAK, VAD_TYPICAL_PEAK, VAD_MAX_GAIN = 0.03, 0.15, 1000.0


def detector_level(wav: Tensor) -> Tensor:
    """``wav`` amplified for the speech detector when it is quiet (above); otherwise itself.
    The level is the 99.9th percentile of the magnitudes (a click does not count)."""
    if wav.numel() == 0:
        return wav
    peak = float(torch.quantile(wav.abs()[:: max(1, wav.numel() // 100_000)], 0.999))
    if peak >= VAD_QUIET_PEAK or peak == 0.0:
        return wav
    return wav * min(VAD_TYPICAL_PEAK / peak, VAD_MAX_GAIN)


def speech_segments(wav: Tensor, max_seconds: float) -> List[Tuple[int, int]]:
    """``[(start, end)]`` samples of the speech in a 16 kHz recording (silero-vad), each at most
    about ``max_seconds`` long (longer speech is split at its longest pause, or hard)."""
    global _vad_model
    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError as e:
        raise AsrcError(f"splitting at pauses needs silero-vad ({e}): pip install silero-vad, "
                        f"or split in windows instead (segment 'chunk')") from e
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets one thread for the whole process
    if _vad_model is None:
        _vad_model = load_silero_vad()
    stamps = get_speech_timestamps(
        detector_level(wav.float()).contiguous(), _vad_model, threshold=VAD_THRESHOLD, sampling_rate=SAMPLE_RATE,
        min_silence_duration_ms=VAD_MIN_SILENCE_MS, speech_pad_ms=VAD_SPEECH_PAD_MS,
        max_speech_duration_s=max_seconds)
    return [(int(t["start"]), int(t["end"])) for t in stamps]


def recognise(net, wav: Tensor, decoder, segment: str = "none", chunk_seconds: float = 10.0,
              context_seconds: float = 1.0):
    """Decode one 16 kHz recording (``[samples]``) into a :class:`~asrc.decode.ctc.Hypothesis`,
    as ``segment`` says (module docstring). With ``vad`` a recording no longer than
    ``chunk_seconds`` is trimmed to its speech (first to last, with a margin) and decoded in one
    piece; a longer one is split at its pauses; one in which the detector hears no speech is
    decoded as with ``chunk``, the model having the last word."""
    from asrc.decode.ctc import Hypothesis, word_boundary

    if segment not in SEGMENT_MODES:
        raise ValueError(f"unknown segment mode {segment!r}; expected one of {SEGMENT_MODES}")
    n = int(wav.shape[0])
    long_input = n > chunk_seconds * SAMPLE_RATE
    if segment == "none" or (segment == "chunk" and not long_input):
        logits, lengths = net(wav.unsqueeze(0), torch.tensor([n], device=wav.device))
        return decoder(logits.float(), lengths.cpu())[0]
    if segment == "chunk":
        logits, lengths = chunked_forward(net, wav, chunk_seconds, context_seconds)
        return decoder(logits.float(), lengths.cpu())[0]
    config = getattr(net, "config", None)
    rf = getattr(config, "receptive_field", 1)
    stride = getattr(config, "total_stride", 320)
    segments = [(a, b) for a, b in speech_segments(wav.cpu(), chunk_seconds) if b - a >= rf]
    if not segments:
        # The detector heard no speech: let the model decide (it may hear what the detector missed).
        return recognise(net, wav, decoder, "chunk", chunk_seconds, context_seconds)
    if not long_input:
        # One utterance: trimmed to its speech, with a margin, and decoded in one piece.
        margin = int(TRIM_MARGIN_SECONDS * SAMPLE_RATE)
        segments = [(max(0, segments[0][0] - margin), min(n, segments[-1][1] + margin))]
    hyps = []
    for start, end in segments:
        logits, lengths = chunked_forward(net, wav[start:end], chunk_seconds, context_seconds)
        h = decoder(logits.float(), lengths.cpu())[0]
        if h.text:
            offset = start / stride  # the piece's frames on the recording's frame clock
            h.frames = [(a + offset, b + offset) for a, b in h.frames]
            hyps.append(h)
    boundary = word_boundary(decoder.tokens)
    boundary = None if boundary is None else decoder.tokens.index(boundary)
    ids: List[int] = []
    frames: List[Tuple[float, float]] = []
    confidences: List[float] = []
    for h in hyps:
        if ids and boundary is not None:
            ids.append(boundary)
            frames.append((frames[-1][1], frames[-1][1]) if frames else (0.0, 0.0))
            confidences.append(1.0)
        ids.extend(h.ids)
        frames.extend(h.frames)
        confidences.extend(h.confidences)
    return Hypothesis(ids=ids, text=" ".join(h.text for h in hyps), score=sum(h.score for h in hyps),
                      words=[w for h in hyps for w in h.words], frames=frames, confidences=confidences)
