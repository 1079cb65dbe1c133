"""Length batching shared by training helpers and decoding."""

from typing import Callable, Iterable, List, TypeVar

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
