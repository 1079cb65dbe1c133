"""``--preprocessor asrc``: ESPnet's own preprocessor plus the checks and augmentations it lacks.

:class:`AsrcPreprocessor` is :class:`espnet2.train.preprocessor.CommonPreprocessor` (text to
token ids, and in training ESPnet's augmentation: ``--rir_scp`` reverberation,
``--noise_scp`` / ``--noise_db_range`` additive noise, ``preprocessor_conf.data_aug_effects``
speed perturbation, telephone band limits, filters, ...) with:

- a check of every utterance's samples: NaN or Inf stops training with an error naming the
  utterance (ESPnet would train on it and the loss would turn NaN many updates later);
- in training, two augmentations ESPnet has no option for, applied before its own so that
  reverberation and noise cover them too: leading/trailing silence
  (``silence_range: [min_s, max_s]``, a random length at each end, at a random level
  ``silence_db_range`` below the utterance's peak, not digital zero) and a random gain
  (``gain_db_range: [low, high]``; models that normalise each utterance only see it through
  clipping and the noise floor, which is what it is for).

Randomness comes from numpy's global generator, as in ESPnet's own augmentation (its data
loader seeds each worker from ``--seed``).
"""

from typing import Dict, Optional, Sequence, Union

import numpy as np
from espnet2.train.preprocessor import CommonPreprocessor

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError

__all__ = ["AsrcPreprocessor"]


class AsrcPreprocessor(CommonPreprocessor):
    """CommonPreprocessor + a non-finite check + silence padding and gain (see the module doc)."""

    def __init__(self, train: bool, *, silence_range: Optional[Sequence[float]] = None,
                 silence_db_range: Sequence[float] = (-70.0, -50.0), gain_db_range: Optional[Sequence[float]] = None,
                 **kwargs):
        super().__init__(train, **kwargs)
        self.silence_range = _range("silence_range", silence_range, low=0.0)
        self.silence_db_range = _range("silence_db_range", silence_db_range)
        self.gain_db_range = _range("gain_db_range", gain_db_range)
        self.sample_rate = kwargs.get("fs") or SAMPLE_RATE

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        speech = data.get(self.speech_name)
        if isinstance(speech, np.ndarray):
            bad = int(np.size(speech) - np.count_nonzero(np.isfinite(speech)))
            if bad:
                raise AsrcError(f"utterance {uid}: audio has {bad} non-finite samples (NaN/Inf); "
                                f"fix or remove it (asrc-data validate lists such files)")
            if self.train:
                data[self.speech_name] = self._pad_and_gain(speech)
        return super().__call__(uid, data)

    def _speech_process(self, data):
        # ESPnet returns mono speech as [T, 1] after reverberation/noise, and its
        # DataAugmentation then fails on it (it takes [T] only): run the effects here, on [T].
        effects, self.data_aug = self.data_aug, None
        try:
            data = super()._speech_process(data)
        finally:
            self.data_aug = effects
        speech = data.get(self.speech_name)
        if isinstance(speech, np.ndarray) and speech.ndim == 2 and speech.shape[1] == 1:
            data[self.speech_name] = speech = speech[:, 0]
        if self.train and effects is not None and self.data_aug_prob >= np.random.random():
            data[self.speech_name] = effects(speech, self.sample_rate)
        return data

    def _pad_and_gain(self, speech: np.ndarray) -> np.ndarray:
        if self.silence_range is not None and speech.ndim == 1:
            peak = float(np.max(np.abs(speech))) or 1.0
            level = peak * 10 ** (np.random.uniform(*self.silence_db_range) / 20)
            lead, trail = (int(np.random.uniform(*self.silence_range) * self.sample_rate) for _ in range(2))
            floor = np.random.standard_normal(lead + trail).astype(speech.dtype) * level
            speech = np.concatenate([floor[:lead], speech, floor[lead:]])
        if self.gain_db_range is not None:
            speech = speech * np.float32(10 ** (np.random.uniform(*self.gain_db_range) / 20))
        return speech


def _range(name: str, value, low: Optional[float] = None):
    if value is None:
        return None
    if len(value) != 2 or float(value[0]) > float(value[1]) or (low is not None and float(value[0]) < low):
        raise AsrcError(f"preprocessor_conf.{name} must be [low, high] with low <= high"
                        f"{'' if low is None else f' and low >= {low}'}, got {value}")
    return float(value[0]), float(value[1])
