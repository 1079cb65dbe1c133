"""Warm start of a wav2vec 2.0 CNN front end by regression onto log-mel filterbanks.

A raw-waveform wav2vec 2.0 model trained with CTC from random weights stays at all-blank
output for a long time on a CPU budget, while the same transformer on log-mel features learns
within minutes (``egs/an4/RESULTS.md``). This module
closes the gap before CTC training: the CNN feature extractor and the feature projection are
trained for a few hundred steps to predict per-bin standardised log-mel frames through a
throw-away linear head (mean squared error over valid frames). The log-mel analysis window is
the front end's receptive field and its hop the front end's total stride (400 and 320 samples,
i.e. 25 ms / 20 ms, for the wav2vec 2.0 layout), so target frame ``t`` and model frame ``t``
see the same samples. Afterwards the projected features carry the filterbank (linearly
decodable), and CTC training starts from "a log-mel model" rather than from noise.

Only ``feature_extractor.*`` and ``feature_projection.*`` change; the transformer, positional
conv and CTC head keep their random initialisation, and the head used for the regression is
discarded.

    model = build_model(config, tokens)
    stats = init_frontend(model, batches, steps=300)   # batches: iterable of (wav [B,T], lengths [B])
    save_model_dir(model, "exp/frontend_init")

Students narrower than their teacher (fewer CNN channels, a smaller embed_dim) inherit no
front-end weights (:func:`asrc.models.student.build_student` copies only what fits). With
``teacher=`` the same regression targets the teacher's projected CNN features (standardised per
dimension) instead of log-mel: the narrow front end starts as a compressed copy of the
teacher's, which is what the distillation's hidden-state loss then builds on. Teacher and
student must have the same conv kernels and strides (same frames).
"""

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from asrc.core.batching import pack_padded, pad_waveforms
from asrc.core.constants import SAMPLE_RATE
from asrc.models.wav2vec2 import Wav2Vec2CTC, lengths_to_padding_mask

__all__ = [
    "LogMel", "TeacherFeatures", "FrontendInitStats", "regression_loss", "init_frontend", "length_batches", "data_dir_batches",
    "frontend_init_data_dir",
]


class LogMel(nn.Module):
    """Log-mel frames aligned with the model's CNN frames.

    Window = ``config.receptive_field`` samples (Hann), hop = ``config.total_stride``, no
    centring, so a waveform of ``L`` samples gives exactly the model's frame count.
    """

    def __init__(self, model: Wav2Vec2CTC, n_mels: int = 80, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        import torchaudio

        c = model.config
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=c.receptive_field, win_length=c.receptive_field, hop_length=c.total_stride,
            n_mels=n_mels, center=False, power=2.0)

    @property
    def dim(self) -> int:
        return self.n_mels

    def forward(self, wav: Tensor) -> Tensor:
        """wav ``[batch, sample]`` -> ``[batch, frame, n_mels]`` natural-log mel energies."""
        return torch.log(self.mel(wav) + 1e-6).transpose(1, 2)

    def target(self, model_input: Tensor, wav: Tensor, lengths: Tensor) -> Tensor:
        """Regression target of the (normalised) model input."""
        return self(model_input)


class TeacherFeatures(nn.Module):
    """The teacher's projected CNN features ``[batch, frame, teacher embed_dim]`` as the target."""

    def __init__(self, teacher: Wav2Vec2CTC, student: Wav2Vec2CTC):
        super().__init__()
        t, s = teacher.config, student.config
        if [(k, st) for _, k, st in t.conv_layers] != [(k, st) for _, k, st in s.conv_layers]:
            raise ValueError(f"teacher and student conv kernels/strides differ ({t.conv_layers} vs "
                             f"{s.conv_layers}): their frames would not line up")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.teacher.config.embed_dim

    def train(self, mode: bool = True):
        return self  # the teacher stays in eval mode (no dropout in the targets)

    def target(self, model_input: Tensor, wav: Tensor, lengths: Tensor) -> Tensor:
        x = _model_input(self.teacher, wav, lengths)
        feats, _ = self.teacher.feature_extractor(x, lengths)
        return self.teacher.feature_projection(feats.transpose(1, 2))


@dataclass
class FrontendInitStats:
    """What :func:`init_frontend` did: steps run, per-step losses, target statistics."""

    steps: int = 0
    losses: List[float] = field(default_factory=list)
    mel_mean: Optional[Tensor] = None
    mel_std: Optional[Tensor] = None

    def final_loss(self, last: int = 20) -> float:
        """Mean of the last ``last`` losses (NaN if none); 1.0 = predicting the mean."""
        tail = self.losses[-last:]
        return sum(tail) / len(tail) if tail else math.nan


def _model_input(model: Wav2Vec2CTC, wav: Tensor, lengths: Tensor) -> Tensor:
    # The model normalises inside encode(); the front end alone must see the same input.
    return model.normalize(wav, lengths) if model.config.normalize_waveform else wav


def mel_statistics(model: Wav2Vec2CTC, logmel, batches: Iterable[Tuple[Tensor, Tensor]],
                   max_batches: int = 50) -> Tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation of the targets (``logmel``: :class:`LogMel` or
    :class:`TeacherFeatures`) over valid frames."""
    total = sq = None
    count = 0
    with torch.no_grad():
        for i, (wav, lengths) in enumerate(batches):
            if i >= max_batches:
                break
            mel = logmel.target(_model_input(model, wav, lengths), wav, lengths)
            valid = ~lengths_to_padding_mask(model.output_lengths(lengths), mel.shape[1])
            frames = mel[valid].double()
            total = frames.sum(0) if total is None else total + frames.sum(0)
            sq = (frames ** 2).sum(0) if sq is None else sq + (frames ** 2).sum(0)
            count += frames.shape[0]
    if not count:
        raise ValueError("mel_statistics: no frames in the batches given")
    mean = total / count
    std = (sq / count - mean ** 2).clamp(min=1e-8).sqrt()
    return mean.float(), std.float()


def regression_loss(model: Wav2Vec2CTC, head: nn.Module, logmel, wav: Tensor, lengths: Tensor,
                    mel_mean: Tensor, mel_std: Tensor) -> Tensor:
    """MSE between ``head(projected CNN features)`` and the standardised target (log-mel or the
    teacher's features, see :func:`mel_statistics`), over valid frames.

    wav ``[batch, sample]``, lengths ``[batch]``; returns a scalar (1.0 = predicting the mean).
    """
    x = _model_input(model, wav, lengths)
    with torch.no_grad():
        target = (logmel.target(x, wav, lengths) - mel_mean) / mel_std
    feats, flens = model.feature_extractor(x, lengths)
    pred = head(model.feature_projection(feats.transpose(1, 2)))
    if pred.shape != target.shape:
        raise ValueError(f"front end gives {tuple(pred.shape)} frames but the log-mel target has "
                         f"{tuple(target.shape)} frames; is the conv stack unpadded?")
    valid = (~lengths_to_padding_mask(flens, pred.shape[1])).unsqueeze(-1).to(pred.dtype)
    return (((pred - target) ** 2) * valid).sum() / (valid.sum() * pred.shape[-1]).clamp(min=1.0)


class _on_device:
    """Re-iterable view of ``(wav, lengths)`` batches moved to ``device``."""

    def __init__(self, batches, device):
        self.batches, self.device = batches, device

    def __iter__(self):
        for wav, lengths in self.batches:
            yield wav.to(self.device), lengths.to(self.device)


def init_frontend(model: Wav2Vec2CTC, batches: Iterable[Tuple[Tensor, Tensor]], steps: int, lr: float = 2e-3,
                  n_mels: int = 80, clip: float = 5.0, stats_batches: int = 50,
                  progress: bool = False, teacher: Optional[Wav2Vec2CTC] = None) -> FrontendInitStats:
    """Train ``model``'s front end in place to predict log-mel frames (or, with ``teacher``,
    the teacher's projected CNN features) for ``steps`` steps.

    ``batches`` yields ``(wav [B,T] float32, lengths [B])`` and is iterated again as often as
    needed (a list, or an object whose ``__iter__`` reshuffles). The first ``stats_batches``
    batches also give the per-bin target statistics. AdamW, constant ``lr``, gradient clipping.
    """
    if steps < 1:
        raise ValueError(f"init_frontend: steps={steps} must be >= 1")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"init_frontend: lr={lr} must be a finite number > 0")
    if teacher is None and n_mels < 1:
        # No target at all: the loss is 0 from the start and nothing would be learnt.
        raise ValueError(f"init_frontend: n_mels={n_mels} must be >= 1")
    device = next(model.parameters()).device
    batches = _on_device(batches, device)
    logmel = (LogMel(model, n_mels) if teacher is None else TeacherFeatures(teacher.to(device), model)).to(device)
    mel_mean, mel_std = mel_statistics(model, logmel, batches, stats_batches)
    head = nn.Linear(model.config.embed_dim, logmel.dim).to(device)
    params = (list(model.feature_extractor.parameters()) + list(model.feature_projection.parameters())
              + list(head.parameters()))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    stats = FrontendInitStats(mel_mean=mel_mean, mel_std=mel_std)
    was_training = model.training
    model.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="front-end warm start", unit="step")
    try:
        while stats.steps < steps:
            n_before = stats.steps
            for wav, lengths in batches:
                loss = regression_loss(model, head, logmel, wav, lengths, mel_mean, mel_std)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                stats.steps += 1
                stats.losses.append(loss.item())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(mse=f"{stats.final_loss():.3f}")
                if stats.steps >= steps:
                    break
            if stats.steps == n_before:
                raise ValueError("init_frontend: the batches are empty")
    finally:
        if bar is not None:
            bar.close()
    model.train(was_training)
    return stats


def group_by_length(lengths: Sequence[int], max_samples: int) -> List[List[int]]:
    """Index batches of similar length, at most ``max_samples`` padded samples each, shortest first."""
    return pack_padded(sorted(range(len(lengths)), key=lambda i: lengths[i]), lengths.__getitem__, max_samples)


def length_batches(lengths: Sequence[int], max_samples: int, seed: int = 0) -> Iterator[List[int]]:
    """:func:`group_by_length` batches in random order."""
    batches = group_by_length(lengths, max_samples)
    random.Random(seed).shuffle(batches)
    return iter(batches)


class data_dir_batches:
    """Re-iterable ``(wav, lengths)`` batches of a Kaldi-style data directory, reshuffled each pass.

    Audio is read with :func:`asrc.core.audio.read_audio` (files and Kaldi ``cmd |``
    pipes; damaged audio is an error naming the utterance); utterances shorter than
    ``min_samples`` (the receptive field) cannot produce a frame and are reported in ``skipped``.
    """

    def __init__(self, data_dir, max_seconds: float = 25.0, min_samples: int = 400, seed: int = 0,
                 sample_rate: int = SAMPLE_RATE):
        from asrc.core.tables import read_data_dir

        utts = read_data_dir(data_dir, require_text=False)  # audio only: transcripts are not used
        bad = [u.utt_id for u in utts if u.sample_rate != sample_rate]
        if bad:
            raise ValueError(f"{data_dir}: {len(bad)} utterances are not {sample_rate} Hz, e.g. {bad[:5]}")
        self.skipped = [u.utt_id for u in utts if u.num_samples < min_samples]
        self.utts = [u for u in utts if u.num_samples >= min_samples]
        if not self.utts:
            raise ValueError(f"{data_dir}: no utterance of at least {min_samples} samples")
        self.max_samples = int(max_seconds * sample_rate)
        self.sample_rate = sample_rate
        self.seed = seed
        self.epoch = 0

    def __iter__(self):
        from asrc.core.audio import read_audio

        order = length_batches([u.num_samples for u in self.utts], self.max_samples, self.seed + self.epoch)
        self.epoch += 1
        for idx in order:
            wavs = []
            for i in idx:
                u = self.utts[i]
                wavs.append(torch.from_numpy(read_audio(u.audio, what=f"utterance {u.utt_id}",
                                                        sample_rate=self.sample_rate)))
            yield pad_waveforms(wavs)


def frontend_init_data_dir(model: Wav2Vec2CTC, data_dir, out_dir, steps: int, lr: float = 2e-3,
                           max_seconds: float = 25.0, n_mels: int = 80, seed: int = 0,
                           progress: bool = True, teacher: Optional[Wav2Vec2CTC] = None,
                           teacher_dir=None) -> FrontendInitStats:
    """Warm-start ``model``'s front end on the audio of ``data_dir``; write a model directory.

    ``out_dir`` gets ``config.yaml``, ``model.pth``, ``tokens.txt`` (when the model has tokens)
    and ``frontend_init.log`` (steps, loss every 10 steps, skipped utterances).
    """
    from asrc.models.io import save_model_dir
    from asrc.core.files import atomic_write

    torch.manual_seed(seed)
    batches = data_dir_batches(data_dir, max_seconds=max_seconds, min_samples=model.config.receptive_field,
                               seed=seed)
    stats = init_frontend(model, batches, steps, lr=lr, n_mels=n_mels, progress=progress, teacher=teacher)
    out = Path(out_dir)
    save_model_dir(model.eval().cpu(), out)  # a CPU checkpoint, whatever the device
    with atomic_write(out / "frontend_init.log") as f:
        f.write(f"data_dir {data_dir}\nsteps {stats.steps}\nlr {lr}\nmax_seconds {max_seconds}\nseed {seed}\n")
        f.write(f"target teacher_features {teacher_dir or 'given'}\n" if teacher is not None else f"target log_mel {n_mels}\n")
        f.write(f"final_mse {stats.final_loss():.4f}\n")
        f.write(f"skipped_short {len(batches.skipped)} {' '.join(batches.skipped)}\n")
        for i in range(0, len(stats.losses), 10):
            f.write(f"step {i + 1} mse {stats.losses[i]:.4f}\n")
    return stats
