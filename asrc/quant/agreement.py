"""How closely a compressed model follows its float original, utterance by utterance.

Used to state what quantization or export costs in accuracy when no labelled data is at hand:
the float model's own outputs are the reference.
"""

from typing import Callable, Dict, Iterable, List

import torch
import torch.nn.functional as F
from torch import Tensor

Runner = Callable[[Tensor, Tensor], tuple]


@torch.inference_mode()
def agreement(reference: Runner, candidate: Runner, waveforms: Iterable[Tensor], blank: int = 0) -> Dict[str, float]:
    """Compare two ``(wav[B,T], lengths[B]) -> (logits, out_lengths)`` callables on waveforms.

    Each waveform runs alone (batch of one). Returns, averaged over utterances unless noted:

    ``logit_cosine``       cosine similarity of the flattened logits
    ``max_abs_diff``       largest absolute logit difference (over all utterances)
    ``posterior_kl``       KL(reference || candidate) of the CTC posteriors, nats per frame
    ``frame_agreement``    fraction of frames (all utterances pooled) with the same argmax
    ``greedy_token_error`` edit distance between the greedy CTC outputs / reference output length,
                           pooled over utterances (0 = identical transcripts)
    ``greedy_identical``   fraction of utterances with identical greedy output
    """
    from asrc.models.ctc import greedy_ids
    from asrc.score.align import align, count

    cos, kl, identical = [], [], []
    max_abs = 0.0
    same_frames = frames = errors = ref_tokens = 0
    for wav in waveforms:
        wav = torch.as_tensor(wav, dtype=torch.float32).flatten()[None]
        lengths = torch.tensor([wav.shape[1]])
        ref, ref_len = reference(wav, lengths)[:2]
        cand, cand_len = candidate(wav, lengths)[:2]
        ref, cand = torch.as_tensor(ref).float(), torch.as_tensor(cand).float()
        if ref.shape != cand.shape or torch.as_tensor(ref_len).tolist() != torch.as_tensor(cand_len).tolist():
            raise ValueError(f"outputs differ in shape: reference {tuple(ref.shape)} lengths "
                             f"{torch.as_tensor(ref_len).tolist()}, candidate {tuple(cand.shape)} lengths "
                             f"{torch.as_tensor(cand_len).tolist()}")
        cos.append(F.cosine_similarity(ref.flatten(), cand.flatten(), dim=0).item())
        max_abs = max(max_abs, (ref - cand).abs().max().item())
        log_p, log_q = ref.log_softmax(-1), cand.log_softmax(-1)
        kl.append((log_p.exp() * (log_p - log_q)).sum(-1).mean().item())
        same_frames += int((ref.argmax(-1) == cand.argmax(-1)).sum())
        frames += ref.shape[1]
        hyp_ref = [str(i) for i in greedy_ids(ref, blank=blank)[0]]
        hyp_cand = [str(i) for i in greedy_ids(cand, blank=blank)[0]]
        c = count(align(hyp_ref, hyp_cand))
        errors += c.err
        ref_tokens += len(hyp_ref)
        identical.append(float(hyp_ref == hyp_cand))
    n = len(cos)
    if n == 0:
        raise ValueError("agreement: no waveforms given")
    return {
        "utterances": n,
        "logit_cosine": sum(cos) / n,
        "min_logit_cosine": min(cos),
        "max_abs_diff": max_abs,
        "posterior_kl": sum(kl) / n,
        "frame_agreement": same_frames / frames,
        "greedy_token_error": errors / max(ref_tokens, 1),
        "greedy_identical": sum(identical) / n,
    }


def format_agreement(stats: Dict[str, float]) -> List[str]:
    return [
        f"utterances            {stats['utterances']}",
        f"logit cosine          {stats['logit_cosine']:.5f} (min {stats['min_logit_cosine']:.5f})",
        f"max |logit diff|      {stats['max_abs_diff']:.4g}",
        f"posterior KL          {stats['posterior_kl']:.3g} nats/frame",
        f"frame argmax agree    {100 * stats['frame_agreement']:.2f} %",
        f"greedy token error    {100 * stats['greedy_token_error']:.2f} % (vs float output)",
        f"greedy identical      {100 * stats['greedy_identical']:.1f} % of utterances",
    ]
