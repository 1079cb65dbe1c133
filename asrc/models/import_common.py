"""What the Hugging Face and fairseq importers share: key renaming, tokens, the import result.

An importer turns a foreign checkpoint into an :class:`ImportedCheckpoint` (config, state
dict under asrc's parameter names, token list, and an account of everything it did not copy
one to one); :meth:`ImportedCheckpoint.build_model` and :meth:`ImportedCheckpoint.save` do the
rest the same way for every source.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from torch import Tensor

from asrc.core.constants import BLANK
from asrc.errors import CheckpointError
from asrc.models.config import Wav2Vec2Config
from asrc.models.io import load_state_dict_strict, save_model_dir
from asrc.models.wav2vec2 import Wav2Vec2CTC


# A weight-normed conv is saved as ``weight_g``/``weight_v`` by ``torch.nn.utils.weight_norm``
# (fairseq, older transformers) and as these by ``torch.nn.utils.parametrizations.weight_norm``
# (newer transformers); asrc uses the first spelling.
WEIGHT_NORM_PARAMETRIZATIONS = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}
# Regex group for the parameters of a weight-normed conv with bias, in either spelling.
WEIGHT_NORM_CONV_PARAM = r"(bias|weight_g|weight_v|parametrizations\.weight\.original[01])"

# Parameters an importer may leave to the model's own initialisation, with the reason.
FRESH_OK = {
    "mask_emb": "the checkpoint has no time-mask embedding (only used when fine-tuning with masks)",
    "ctc_head.weight": "the checkpoint has no CTC head (pretrained model): the head is untrained",
    "ctc_head.bias": "the checkpoint has no CTC head (pretrained model): the head is untrained",
}


@dataclass
class RenameRule:
    """``pattern`` (full match on a source key) -> ``target`` (``re`` template), or None = drop."""

    pattern: str
    target: Optional[str]

    def __post_init__(self):
        self.regex = re.compile(self.pattern)


def rename_state_dict(state: Dict[str, Tensor], rules: Sequence[RenameRule], source: str):
    """Rename every key by the first rule that matches it.

    Returns ``(renamed, dropped)``: the state dict under asrc names and the sorted source keys
    that a rule deliberately drops. A key no rule matches, or two keys landing on one name,
    is an error that lists them.
    """
    renamed, origin, dropped, unknown = {}, {}, [], []
    for key, value in state.items():
        for rule in rules:
            m = rule.regex.fullmatch(key)
            if m is None:
                continue
            if rule.target is None:
                dropped.append(key)
            else:
                new = m.expand(rule.target)
                for suffix, canonical in WEIGHT_NORM_PARAMETRIZATIONS.items():
                    if new.endswith("." + suffix):
                        new = new[: -len(suffix)] + canonical
                if new in renamed:
                    raise CheckpointError(f"{source}: keys {origin[new]!r} and {key!r} both map to {new!r}")
                renamed[new], origin[new] = value, key
            break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: unknown keys {sorted(unknown)} (not part of a wav2vec 2.0 CTC model)")
    return renamed, sorted(dropped)


def check_tokens(tokens: Sequence[str], source: str):
    """asrc token lists: unique, non-empty, no whitespace, ``<blank>`` first."""
    bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise CheckpointError(f"{source}: tokens {bad!r} are empty or contain whitespace; "
                              "tokens.txt holds one token per line without spaces")
    seen, dup = set(), []
    for t in tokens:
        if t in seen:
            dup.append(t)
        seen.add(t)
    if dup:
        raise CheckpointError(f"{source}: duplicate tokens {sorted(set(dup))!r}")
    if not tokens or tokens[0] != BLANK:
        raise CheckpointError(f"{source}: token 0 must be the CTC blank {BLANK!r}, got {tokens[:1]!r}")


@dataclass
class ImportedCheckpoint:
    """A foreign checkpoint in asrc terms.

    state_dict: tensors under asrc names; every model parameter except those in ``fresh``.
    fresh: asrc parameters the checkpoint lacks and the model initialises (see ``FRESH_OK``).
    dropped: source keys deliberately not imported (pretraining-only modules).
    notes: defaults assumed and other facts a user should read.
    """

    source: str
    config: Wav2Vec2Config
    state_dict: Dict[str, Tensor]
    tokens: Optional[List[str]]
    fresh: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def __post_init__(self):
        not_ok = sorted(set(self.fresh) - set(FRESH_OK))
        if not_ok:
            raise CheckpointError(f"{self.source}: missing keys {not_ok}")
        if self.tokens is not None:
            check_tokens(self.tokens, self.source)

    def build_model(self) -> Wav2Vec2CTC:
        """The model in eval mode; every tensor checked by name and shape."""
        model = Wav2Vec2CTC(self.config, self.tokens)
        own = model.state_dict()
        state = {**{k: own[k] for k in self.fresh if k in own}, **self.state_dict}
        load_state_dict_strict(model, state, f"{self.source} (keys renamed to asrc names)")
        return model.eval()

    def save(self, out_dir) -> Wav2Vec2CTC:
        """Write the model directory; returns the model that was written."""
        model = self.build_model()
        save_model_dir(model, out_dir, self.tokens)
        return model

    def report(self) -> List[str]:
        """Human-readable lines: what was imported and what was not."""
        c = self.config
        lines = [
            f"source: {self.source}",
            f"architecture: {c.num_layers} {'pre-LN' if c.layer_norm_first else 'post-LN'} layers, "
            f"width {c.embed_dim}, ffn {c.ffn_dim}, {c.num_heads} heads, {len(c.conv_layers)} conv layers "
            f"({c.extractor_mode}), vocab {c.vocab_size}, normalize_waveform={c.normalize_waveform}",
        ]
        lines += [f"initialised (not in checkpoint): {k}: {FRESH_OK[k]}" for k in sorted(self.fresh)]
        if self.dropped:
            lines.append(f"dropped (pretraining only): {', '.join(self.dropped)}")
        lines += [f"note: {n}" for n in self.notes]
        return lines


def move_blank_first(state: Dict[str, Tensor], tokens: List[str], blank: int) -> List[str]:
    """Move CTC output ``blank`` to index 0 (asrc's convention), rows of the head with it."""
    if blank == 0:
        return tokens
    order = [blank] + [i for i in range(len(tokens)) if i != blank]
    for name in ("ctc_head.weight", "ctc_head.bias"):
        if name in state:
            state[name] = state[name][order].contiguous()
    return [tokens[i] for i in order]
