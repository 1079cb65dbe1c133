"""What a CTC head's output means without a search: the best path.

Decoders (:mod:`asrc.decode.ctc`) and comparisons of two models' outputs
(:mod:`asrc.quant.agreement`) both start here.
"""

from typing import List, Optional

import torch


def check_logits(logits: torch.Tensor, lengths: Optional[torch.Tensor], vocab: int) -> torch.Tensor:
    """``lengths`` (``[batch]`` valid frames, default all) as a CPU long tensor, after checking the
    shapes of ``logits [batch, frames, vocab]`` and ``lengths``; ``ValueError`` names the misfit."""
    if logits.ndim != 3:
        raise ValueError(f"logits must be [batch, frames, vocab], got shape {tuple(logits.shape)}")
    if logits.shape[2] != vocab:
        raise ValueError(f"logits have {logits.shape[2]} outputs but the token list has {vocab} tokens")
    if lengths is None:
        return torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
    if lengths.shape != (logits.shape[0],):
        raise ValueError(f"lengths must be [batch]={logits.shape[0]}, got shape {tuple(lengths.shape)}")
    if len(lengths) and (int(lengths.max()) > logits.shape[1] or int(lengths.min()) < 0):
        raise ValueError(f"lengths {lengths.tolist()} outside [0, {logits.shape[1]}] frames")
    return lengths.to(torch.long).cpu()


def greedy_ids(logits: torch.Tensor, lengths: Optional[torch.Tensor] = None, blank: int = 0) -> List[List[int]]:
    """Best-path CTC decoding: argmax per frame, collapse repeats, then drop blanks.

    Args:
        logits: ``[batch, frames, vocab]`` scores (logits or log-probabilities).
        lengths: ``[batch]`` valid frames per utterance; frames past it are ignored.
        blank: the blank index.

    Returns:
        Per utterance, the output indices. A blank between two equal labels keeps both
        (``A - A`` -> ``A A``), a repeat without blank merges (``A A`` -> ``A``).
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be [batch, frames, vocab], got shape {tuple(logits.shape)}")
    batch, frames, _ = logits.shape
    lengths = check_logits(logits, lengths, logits.shape[2])
    best = logits.argmax(dim=-1).cpu()  # [B, T']
    new = torch.ones_like(best, dtype=torch.bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    valid = torch.arange(frames).unsqueeze(0) < lengths.unsqueeze(1)
    keep = new & (best != blank) & valid
    return [best[b][keep[b]].tolist() for b in range(batch)]
