"""Transcribe individual audio files (any rate, any channel count) with a model directory."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

from asrc.core.audio import read_audio
from asrc.decode.ctc import timed_words
from asrc.decode.longform import recognise
from asrc.decode.model_dir import frame_seconds, load_model, resolve_model_dir
from asrc.decode.options import DecodeOptions, build_decoder
from asrc.errors import AsrcError


@dataclass
class Transcript:
    """A file's text and its words: ``(word, start, end, confidence)``, times in seconds."""

    text: str
    words: List[Tuple[str, float, float, float]]


def transcribe_files(
    model, paths: Sequence[str], options: Optional[DecodeOptions] = None, work_dir=None, word_times: bool = False
) -> List[Tuple[str, Union[str, Transcript, Exception]]]:
    """Recognise each file on its own (no padding, so no batch effects).

    Audio is mixed down to mono and resampled to 16 kHz as needed; it is cut (trimmed,
    split at pauses, windows) as ``options.segment`` says (:mod:`asrc.decode.longform`). A file that cannot be read
    (or is too short for the model) does not stop the others: its entry holds the exception,
    whose message names the file.

    Args:
        model: asrc model directory (or ESPnet experiment directory, exported into ``work_dir``).
        paths: audio files.
        options: decoding method and beam options (batching/job options are ignored).
        work_dir: where an ESPnet experiment is exported (default: ``model/asrc_export``).
        word_times: return a :class:`Transcript` (text, timed words with their confidence)
            instead of the text.
            A word spans the output frames of its tokens (greedy: their runs of frames; beam
            search: the frame each token was emitted in), one frame being the front end's stride
            (20 ms for wav2vec 2.0).

    Returns:
        ``[(path, text, Transcript or exception)]`` in the order given.
    """
    options = options or DecodeOptions()
    options.validate()
    model_dir = resolve_model_dir(model, work_dir or Path(model) / "asrc_export")
    net = load_model(model_dir)
    decoder = build_decoder(net.tokens, options)
    min_samples = getattr(getattr(net, "config", None), "receptive_field", 0)
    seconds_per_frame = frame_seconds(net)
    out = []
    for path in paths:
        try:
            wav = read_audio(str(path), what=f"file {path}", resample=True, mix_channels=True)
            if wav.shape[0] < min_samples:
                raise AsrcError(f"file {path}: {wav.shape[0]} samples at 16 kHz, fewer than the model's {min_samples}")
            with torch.inference_mode():
                hyp = recognise(net, torch.from_numpy(wav), decoder, options.segment, options.chunk_seconds,
                                options.context_seconds)
            if word_times:
                timed = [(w, round(a, 3), round(b, 3), round(c, 4))
                         for w, a, b, c in timed_words(hyp, net.tokens, seconds_per_frame)]
                out.append((str(path), Transcript(hyp.text, timed)))
            else:
                out.append((str(path), hyp.text))
        except (AsrcError, FileNotFoundError) as e:
            out.append((str(path), e))
    return out
