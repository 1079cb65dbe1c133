"""From a Kaldi-style data directory to the files ESPnet's data loader reads.

ESPnet reads ``wav.scp`` (type ``sound``) and ``text`` (type ``text``) directly; its batch
sampler also needs a shape file, ``utt-id num_samples``. ESPnet recipes get it from a
``collect_stats`` pass over all the audio; asrc data directories already hold
``utt2num_samples`` (:mod:`asrc.data.datadir`), so the shape file is written from it in a
moment, and normalisation statistics are not needed (raw waveform, ``--normalize none``).

While writing it, utterances the model cannot train on are left out and listed with the
reason in ``skipped.txt`` next to the shape file (never silently):

- shorter than the receptive field of the CNN front end (no output frame at all);
- with letter tokens (``--token_type char``): fewer frames than CTC needs for the
  transcript (one per label plus one blank between repeated labels).

For distillation (``untranscribed_ok``) a data directory may leave utterances out of ``text``
or have no ``text`` at all: such utterances are kept, and :func:`write_training_text` writes
the ``text`` ESPnet reads with an empty transcript for each of them (the distillation model
then gives them the teacher's losses only, no CTC).

Faults that are the data's, not the model's (audio not at 16 kHz, a ``cmd |`` pipe that
ESPnet's sound reader cannot open, characters outside the token list, a malformed table)
are errors naming the utterances.
"""

import logging
from pathlib import Path
from typing import List, Optional, Sequence

from asrc.core.constants import SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.models import Wav2Vec2Config

__all__ = ["SAMPLE_RATE", "SHAPE_NAME", "SKIPPED_NAME", "TEXT_NAME", "num_frames", "ctc_min_frames",
           "untranscribed", "write_shape_file", "write_training_text"]

logger = logging.getLogger(__name__)

SHAPE_NAME = "speech_shape"
SKIPPED_NAME = "skipped.txt"
TEXT_NAME = "text"


def num_frames(num_samples: int, config: Wav2Vec2Config) -> int:
    """Output frames of the CNN front end for ``num_samples`` (0 below the receptive field)."""
    n = num_samples
    for _, kernel, stride in config.conv_layers:
        if n < kernel:
            return 0
        n = (n - kernel) // stride + 1
    return n


def ctc_min_frames(labels: Sequence[str]) -> int:
    """Frames CTC needs for ``labels``: one each, plus a blank between equal neighbours."""
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)


def _letters(transcript: str, space_symbol: str) -> List[str]:
    return [space_symbol if c == " " else c for c in transcript]


def _fail(data_dir, what: str, items: List[str]):
    shown = "; ".join(items[:10]) + (f"; ... ({len(items)} in all)" if len(items) > 10 else "")
    raise ValueError(f"{data_dir}: {what}: {shown}")


def write_shape_file(data_dir, out_dir, config: Wav2Vec2Config, token_list: Optional[Sequence[str]] = None,
                     token_type: str = "char", space_symbol: str = "|", untranscribed_ok: bool = False) -> Path:
    """Write ``out_dir/speech_shape`` and ``out_dir/skipped.txt`` for ``data_dir``; returns the shape file.

    ``token_list`` (when given) is checked against the transcripts' characters.
    ``untranscribed_ok`` keeps utterances without a transcript (see the module doc).
    """
    from asrc.data.datadir import validate_data_dir
    from asrc.core.tables import read_data_dir, read_table

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} not found")
    problems = validate_data_dir(data_dir, token_list=token_list, check_audio=False, require_text=not untranscribed_ok)
    if problems:
        _fail(data_dir, "invalid data directory (asrc-data validates and fixes data directories)",
              [str(p) for p in problems])
    pipes = [utt for utt, audio in read_table(data_dir / "wav.scp").items() if audio.endswith("|")]
    if pipes:
        _fail(data_dir, "wav.scp has commands (`cmd |`), which ESPnet's sound reader cannot open; "
                        "write the audio to files first", pipes)
    utts = read_data_dir(data_dir, require_text=not untranscribed_ok)
    rates = [f"{u.utt_id} ({u.sample_rate} Hz)" for u in utts if u.sample_rate != SAMPLE_RATE]
    if rates:
        _fail(data_dir, f"audio must be {SAMPLE_RATE} Hz for wav2vec 2.0", rates)

    kept, skipped = [], []
    for u in utts:
        frames = num_frames(u.num_samples, config)
        if frames == 0:
            skipped.append((u.utt_id, f"{u.num_samples} samples, shorter than the receptive field "
                                      f"({config.receptive_field} samples)"))
            continue
        if token_type == "char" and u.text is not None:
            need = ctc_min_frames(_letters(u.text, space_symbol))
            if frames < need:
                skipped.append((u.utt_id, f"{frames} frames for a transcript that needs {need} under CTC"))
                continue
        kept.append((u.utt_id, u.num_samples))
    if not kept:
        raise ValueError(f"{data_dir}: no utterance is usable for training ({len(skipped)} skipped, "
                         f"first: {skipped[:3]})")

    out_dir = Path(out_dir)
    with atomic_write(out_dir / SHAPE_NAME) as f:
        f.writelines(f"{utt} {n}\n" for utt, n in kept)
    with atomic_write(out_dir / SKIPPED_NAME) as f:
        f.writelines(f"{utt}\t{reason}\n" for utt, reason in skipped)
    if skipped:
        logger.warning("%s: %d of %d utterances left out, listed in %s", data_dir, len(skipped), len(utts),
                       out_dir / SKIPPED_NAME)
    return out_dir / SHAPE_NAME


def untranscribed(data_dir) -> int:
    """How many utterances of ``data_dir`` have no transcript (no ``text``, or left out of it)."""
    from asrc.core.tables import read_table

    data_dir = Path(data_dir)
    if not (data_dir / "wav.scp").is_file():
        return 0  # write_shape_file reports what is missing
    wav = read_table(data_dir / "wav.scp")
    text = read_table(data_dir / "text") if (data_dir / "text").is_file() else {}
    return sum(1 for utt in wav if utt not in text)


def write_training_text(data_dir, out_dir) -> Path:
    """``out_dir/text``: ``data_dir``'s transcripts plus an empty one for each untranscribed utterance."""
    from asrc.core.tables import read_table

    data_dir = Path(data_dir)
    wav = read_table(data_dir / "wav.scp")
    text = read_table(data_dir / "text") if (data_dir / "text").is_file() else {}
    with atomic_write(Path(out_dir) / TEXT_NAME) as f:
        f.writelines(f"{utt} {text.get(utt, '')}".rstrip() + "\n" for utt in wav)
    return Path(out_dir) / TEXT_NAME
