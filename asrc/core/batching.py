"""Batching: zero-padded waveform batches, and grouping items by length into batches."""

from typing import Callable, Iterable, List, Sequence, Tuple, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def pack_padded(items: Iterable[T], size: Callable[[T], int], limit: float) -> List[List[T]]:
    """Consecutive batches of ``items`` whose padded size (count x largest ``size``) stays
    within ``limit``; an item larger than ``limit`` forms a batch on its own.

    Sort ``items`` by size first (either way) to keep padding small.
    """
    batches, current, largest = [], [], 0
    for item in items:
        s = size(item)
        if current and (len(current) + 1) * max(largest, s) > limit:
            batches.append(current)
            current, largest = [], 0
        current.append(item)
        largest = max(largest, s)
    if current:
        batches.append(current)
    return batches


def pad_waveforms(waveforms: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """``[batch, samples]`` zero-padded batch and ``[batch]`` lengths from 1-D waveforms."""
    if not waveforms:
        raise ValueError("no calibration waveforms")
    lengths = torch.tensor([int(w.numel()) for w in waveforms], dtype=torch.long)
    batch = torch.zeros(len(waveforms), int(lengths.max()), dtype=waveforms[0].dtype)
    for i, w in enumerate(waveforms):
        batch[i, :w.numel()] = w.reshape(-1)
    return batch, lengths
