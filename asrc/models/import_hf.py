"""Import Hugging Face ``Wav2Vec2ForCTC`` and ``HubertForCTC`` folders without transformers.

HuBERT has wav2vec 2.0's architecture (CNN, LayerNorm + projection of its features,
convolutional position embedding, Transformer, CTC head); only its pre-training differs, so a
``model_type: hubert`` folder imports into the same asrc model. Folders of the bare models
(``Wav2Vec2Model``, ``HubertModel``: keys without the ``wav2vec2.`` / ``hubert.`` prefix, as
``facebook/hubert-base-ls960`` is saved) import like pre-training folders, with a token list.

A folder written by ``save_pretrained`` (plus its processor) holds:

- ``config.json``: the architecture; keys it lacks take transformers'
  ``Wav2Vec2Config`` defaults, which are the base model's;
- ``model.safetensors`` or ``pytorch_model.bin`` (or sharded, with ``*.index.json``);
- ``vocab.json`` (+ ``added_tokens.json``): token -> CTC output index;
- ``preprocessor_config.json``: ``do_normalize`` -> ``normalize_waveform`` (default true, as
  in transformers' feature extractor); ``tokenizer_config.json``: ``word_delimiter_token``.

Tokens: the token at ``pad_token_id`` is the CTC blank; it becomes ``<blank>`` and index 0
(the head's rows are reordered if it was elsewhere). The word delimiter becomes ``|``.
A pretraining-only folder (``Wav2Vec2ForPreTraining``, no ``lm_head``) imports only with an
explicit token list (``tokens=``), which sizes a freshly initialised CTC head.

Numerics: the model is the same function as transformers' (logits within 1e-4 in the tests).
The waveform normalisation uses variance + 1e-5 (fairseq's) where the Hugging Face feature
extractor adds 1e-7; this matters only for near-silent input.
"""

import json
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from torch import Tensor

from asrc.core.config_files import read_json_object
from asrc.core.constants import BLANK, WORD_BOUNDARY
from asrc.errors import CheckpointError, ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.models.import_common import (WEIGHT_NORM_CONV_PARAM, ImportedCheckpoint, RenameRule, move_blank_first,
                                       rename_state_dict)
from asrc.models.io import read_state_dict
from asrc.models.wav2vec2 import Wav2Vec2CTC

__all__ = ["read_hf", "load_hf", "convert_hf", "from_hf", "hf_config_to_asrc", "hf_state_dict_to_asrc", "hf_tokens",
           "hf_rename_rules", "MODEL_TYPES"]

# transformers' Wav2Vec2Config defaults for keys an older config.json may lack.
HF_DEFAULTS = {
    "model_type": "wav2vec2",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "hidden_act": "gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "layer_norm_eps": 1e-5,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.1,
    "layerdrop": 0.1,
    "apply_spec_augment": True,
    "mask_time_prob": 0.05,
    "mask_time_length": 10,
    "mask_feature_prob": 0.0,
    "mask_feature_length": 10,
    "vocab_size": 32,
    "pad_token_id": 0,
    "add_adapter": False,
    "adapter_attn_dim": None,
    # HubertConfig's (a wav2vec2 model always has the projection's LayerNorm and no batch norm)
    "feat_proj_layer_norm": True,
    "conv_pos_batch_norm": False,
}

#: model_type -> the prefix of the base model's keys in ``*ForCTC`` / ``*ForPreTraining``
MODEL_TYPES = {"wav2vec2": "wav2vec2", "hubert": "hubert"}


def hf_rename_rules(model_type: str = "wav2vec2") -> List[RenameRule]:
    """The rules from a transformers model of ``model_type`` to asrc names; the base model's
    prefix (``wav2vec2.``) is optional, so that a bare ``Wav2Vec2Model`` imports too."""
    _P = r"(?:" + MODEL_TYPES[model_type] + r"\.)?"
    _LAYER = _P + r"encoder\.layers\.(\d+)\."
    return [
        RenameRule(_P + r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)",
                   r"feature_extractor.conv_layers.\1.conv.\2"),
        RenameRule(_P + r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)",
                   r"feature_extractor.conv_layers.\1.norm.\2"),
        RenameRule(_P + r"feature_projection\.(layer_norm|projection)\.(weight|bias)", r"feature_projection.\1.\2"),
        RenameRule(_P + r"encoder\.pos_conv_embed\.conv\." + WEIGHT_NORM_CONV_PARAM, r"encoder.pos_conv.\1"),
        RenameRule(_P + r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
        RenameRule(_LAYER + r"attention\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.\2_proj.\3"),
        RenameRule(_LAYER + r"layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
        RenameRule(_LAYER + r"feed_forward\.intermediate_dense\.(weight|bias)", r"encoder.layers.\1.fc1.\2"),
        RenameRule(_LAYER + r"feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.fc2.\2"),
        RenameRule(_LAYER + r"final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
        RenameRule(_P + r"masked_spec_embed", "mask_emb"),
        RenameRule(r"lm_head\.(weight|bias)", r"ctc_head.\1"),
        # Wav2Vec2ForPreTraining: the contrastive task's modules.
        RenameRule(r"(quantizer|project_q|project_hid)\..*", None),
    ]


HF_RENAME_RULES = hf_rename_rules("wav2vec2")


def _wrong_types(c: dict) -> List[str]:
    """``key=value (expected TYPE)`` for each value of ``c`` whose type differs from its default's."""
    wrong = []
    for key, default in HF_DEFAULTS.items():
        v = c[key]
        if isinstance(default, bool):
            ok, expected = isinstance(v, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = type(v) is int, "an integer"
        elif isinstance(default, float):
            ok, expected = type(v) in (int, float), "a number"
        elif isinstance(default, str):
            ok, expected = isinstance(v, str), "a string"
        elif isinstance(default, list):
            ok, expected = isinstance(v, (list, tuple)) and all(type(x) is int for x in v), "a list of integers"
        else:
            continue
        if not ok:
            wrong.append(f"{key}={v!r} (expected {expected})")
    return wrong


def hf_config_to_asrc(hf: dict, normalize: bool, source: str = "config.json") -> Wav2Vec2Config:
    """transformers ``Wav2Vec2Config`` dict -> :class:`Wav2Vec2Config`."""
    c = {**HF_DEFAULTS, **{k: v for k, v in hf.items() if v is not None or k == "adapter_attn_dim"}}
    wrong = _wrong_types(c)
    if wrong:
        raise ConfigError(f"{source}: " + "; ".join(wrong))
    problems = []
    if c["model_type"] not in MODEL_TYPES:
        problems.append(f"model_type={c['model_type']!r} is not one of {', '.join(map(repr, MODEL_TYPES))}")
    if not c["feat_proj_layer_norm"]:
        problems.append("feat_proj_layer_norm=false (no LayerNorm on the CNN features, as in DistilHuBERT) is not "
                        "supported")
    if c["conv_pos_batch_norm"]:
        problems.append("conv_pos_batch_norm=true (batch norm in the position embedding) is not supported")
    for key in ("feat_extract_activation", "hidden_act"):
        if c[key] != "gelu":
            problems.append(f"{key}={c[key]!r} (only exact 'gelu' is supported)")
    if c["add_adapter"] or c["adapter_attn_dim"] is not None:
        problems.append("adapter layers (add_adapter / adapter_attn_dim) are not supported")
    if c["feat_extract_norm"] not in ("group", "layer"):
        problems.append(f"feat_extract_norm={c['feat_extract_norm']!r} is not 'group' or 'layer'")
    conv = (c["conv_dim"], c["conv_kernel"], c["conv_stride"])
    if len({len(x) for x in conv}) != 1:
        problems.append(f"conv_dim/conv_kernel/conv_stride lengths differ: {[len(x) for x in conv]}")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    spec_augment = bool(c["apply_spec_augment"])
    return Wav2Vec2Config(
        conv_layers=[list(x) for x in zip(*conv)],
        extractor_mode="group_norm" if c["feat_extract_norm"] == "group" else "layer_norm",
        conv_bias=bool(c["conv_bias"]),
        embed_dim=c["hidden_size"],
        ffn_dim=c["intermediate_size"],
        num_heads=c["num_attention_heads"],
        num_layers=c["num_hidden_layers"],
        layer_norm_first=bool(c["do_stable_layer_norm"]),
        pos_conv_kernel=c["num_conv_pos_embeddings"],
        pos_conv_groups=c["num_conv_pos_embedding_groups"],
        layer_norm_eps=float(c["layer_norm_eps"]),
        dropout=c["hidden_dropout"],
        attention_dropout=c["attention_dropout"],
        activation_dropout=c["activation_dropout"],
        feature_dropout=c["feat_proj_dropout"],
        final_dropout=c["final_dropout"],
        layer_drop=c["layerdrop"],
        mask_time_prob=c["mask_time_prob"] if spec_augment else 0.0,
        mask_time_length=c["mask_time_length"],
        mask_channel_prob=c["mask_feature_prob"] if spec_augment else 0.0,
        mask_channel_length=c["mask_feature_length"],
        normalize_waveform=normalize,
        vocab_size=c["vocab_size"],
    )


def hf_state_dict_to_asrc(state: Dict[str, Tensor], source: str = "state_dict", model_type: str = "wav2vec2"):
    """transformers ``Wav2Vec2ForCTC`` / ``HubertForCTC`` (or bare model, or
    ``Wav2Vec2ForPreTraining``) state dict -> ``(asrc state dict, dropped keys)``."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{source}: model_type={model_type!r} is not one of {', '.join(map(repr, MODEL_TYPES))}")
    return rename_state_dict(state, hf_rename_rules(model_type), source)


def hf_tokens(vocab: Dict[str, int], vocab_size: int, pad_token_id: int, word_delimiter: str = WORD_BOUNDARY,
              source: str = "vocab.json"):
    """``{token: index}`` -> (tokens by index with the blank renamed ``<blank>``, notes).

    Outputs of the CTC head that no token names get placeholders ``<unused{i}>``; tokens past
    the head are left out (both noted).
    """
    by_index: Dict[int, str] = {}
    for token, index in vocab.items():
        if not isinstance(index, int):
            raise CheckpointError(f"{source}: token {token!r} has index {index!r}; expected a flat {{token: index}} "
                                  "vocabulary (multilingual per-language vocabularies are not supported)")
        if index in by_index and by_index[index] != token:
            raise CheckpointError(f"{source}: tokens {by_index[index]!r} and {token!r} share index {index}")
        by_index[index] = token
    negative = sorted(t for t, i in vocab.items() if i < 0)
    if negative:
        raise CheckpointError(f"{source}: tokens {negative} have negative indices")
    notes = []
    # Tokenizers may add tokens (<s>, </s>) past the head's outputs: they are not CTC outputs.
    beyond = sorted(i for i in by_index if i >= vocab_size)
    if beyond:
        notes.append(f"tokens {[by_index[i] for i in beyond]} at indices >= vocab_size={vocab_size} "
                     "are not CTC outputs; left out")
    if pad_token_id not in by_index or pad_token_id >= vocab_size:
        raise CheckpointError(f"{source}: no CTC output token at pad_token_id={pad_token_id} (the CTC blank)")
    unnamed = [i for i in range(vocab_size) if i not in by_index]
    if unnamed:
        notes.append(f"CTC outputs {unnamed} have no token in {source}; named <unused{{i}}>")
    tokens = [by_index.get(i, f"<unused{i}>") for i in range(vocab_size)]
    tokens[pad_token_id] = BLANK
    if word_delimiter != WORD_BOUNDARY and word_delimiter in tokens:
        if WORD_BOUNDARY in tokens:
            raise CheckpointError(f"{source}: both the word delimiter {word_delimiter!r} and {WORD_BOUNDARY!r} "
                                  "are tokens; cannot rename the delimiter to '|'")
        tokens[tokens.index(word_delimiter)] = WORD_BOUNDARY
        notes.append(f"word delimiter {word_delimiter!r} renamed {WORD_BOUNDARY!r}")
    return tokens, notes


def _read_json(path: Path) -> dict:
    """A JSON file holding an object (every JSON file of a Hugging Face folder does)."""
    return read_json_object(path, error=CheckpointError)


def _safetensors_damage(path: Path, error: Exception) -> str:
    """What is wrong with a file that safetensors failed on: its header says how long it must be."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"not a safetensors file ({size} bytes; the header length alone takes 8)"
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:  # safetensors' own limit on the header
            return "not a safetensors file (no valid header length in its first 8 bytes)"
        if 8 + n > size:
            return f"truncated safetensors file: its header needs {8 + n} bytes, the file has {size}"
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "not a safetensors file (its header is not a safetensors JSON header)"
    if 8 + n + end > size:
        return f"truncated safetensors file: its header promises {8 + n + end} bytes, the file has {size}"
    return f"safetensors cannot read it: {error}"


def _read_safetensors(path: Path) -> Dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError and OS errors alike: all mean this file
        raise CheckpointError(f"{path}: {_safetensors_damage(path, e)}") from e


def _read_weights(src: Path) -> Dict[str, Tensor]:
    """``model.safetensors`` (preferred, like transformers) or ``pytorch_model.bin``, single or sharded."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (src / single).is_file():
            files = [src / single]
        elif (src / index).is_file():
            weight_map = _read_json(src / index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{src / index}: no weight_map")
            files = [src / name for name in sorted(set(weight_map.values()))]
        else:
            continue
        state = {}
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: shard listed in {src / index} is missing")
            part = _read_safetensors(path) if path.suffix == ".safetensors" else read_state_dict(path)
            if not all(isinstance(v, Tensor) for v in part.values()):
                raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
            state.update(part)
        return state
    raise FileNotFoundError(f"{src}: no model.safetensors or pytorch_model.bin (nor a sharded index)")


def from_hf(hf_config: dict, state_dict: Dict[str, Tensor], normalize: bool, tokens: Optional[Sequence[str]] = None,
            blank: int = 0, source: str = "state_dict", config_source: Optional[str] = None) -> ImportedCheckpoint:
    """An in-memory transformers model (``config.to_dict()``, ``state_dict()``) in asrc terms.

    tokens: one per output of ``lm_head`` with the CTC blank at index ``blank`` (moved to 0,
    head rows with it); for a model without ``lm_head``, the tokens of a new, untrained head
    (blank first). May be None for a model with a head (a model without a token list).
    config_source: names ``hf_config`` in errors (default: ``source``).
    """
    config = hf_config_to_asrc(hf_config, normalize, config_source or source)
    state, dropped = hf_state_dict_to_asrc(state_dict, source, hf_config.get("model_type") or "wav2vec2")
    fresh = [] if "mask_emb" in state else ["mask_emb"]
    notes = []
    if "ctc_head.weight" in state:
        vocab_size = state["ctc_head.weight"].shape[0]
        if vocab_size != config.vocab_size:
            raise CheckpointError(f"{source}: lm_head has {vocab_size} outputs but vocab_size={config.vocab_size}")
        if tokens is not None:
            if len(tokens) != vocab_size:
                raise CheckpointError(f"{source}: {len(tokens)} tokens for the {vocab_size} outputs of lm_head")
            if blank != 0:
                notes.append(f"blank (pad_token_id={blank}) moved to index 0; CTC head rows reordered")
            tokens = move_blank_first(state, list(tokens), blank)
    elif tokens is None:
        raise CheckpointError(f"{source}: no lm_head (a pretraining-only checkpoint); pass a token list "
                              "(asrc-convert --dict) to get a model with an untrained CTC head")
    else:
        config = config.replace(vocab_size=len(tokens))
        fresh += ["ctc_head.weight", "ctc_head.bias"]
    tokens = list(tokens) if tokens is not None else None
    return ImportedCheckpoint(source, config, state, tokens, fresh, dropped, notes)


def read_hf(src, normalize: Optional[bool] = None, tokens: Optional[Sequence[str]] = None) -> ImportedCheckpoint:
    """Read a Hugging Face wav2vec 2.0 folder.

    normalize: overrides ``preprocessor_config.json``'s ``do_normalize``.
    tokens: the token list for a folder without ``lm_head`` (blank first); an error otherwise.
    """
    src = Path(src)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src}: no config.json; not a Hugging Face model folder")
    hf = _read_json(src / "config.json")
    notes = []

    pre_path = src / "preprocessor_config.json"
    pre = _read_json(pre_path) if pre_path.is_file() else {}
    if normalize is None:
        normalize = bool(pre.get("do_normalize", True))
        if "do_normalize" not in pre:
            notes.append(f"no do_normalize in {pre_path.name}; normalize_waveform=true (transformers' default)")
    if pre.get("sampling_rate", 16000) != 16000:
        notes.append(f"{pre_path.name}: sampling_rate={pre['sampling_rate']}; feed the model audio at that rate")

    state = _read_weights(src)
    blank = 0
    if "lm_head.weight" in state:
        if tokens is not None:
            raise ValueError(f"{src}: has a trained lm_head with the tokens of vocab.json; a token list "
                             "(--dict) is only for folders without one")
        tokens, blank = _read_hf_tokens(src, hf, state["lm_head.weight"].shape[0], notes)
    imported = from_hf(hf, state, normalize, tokens, blank, str(src), config_source=str(src / "config.json"))
    imported.notes[:0] = notes
    return imported


def _read_hf_tokens(src: Path, hf: dict, vocab_size: int, notes: List[str]):
    vocab_path = src / "vocab.json"
    if not vocab_path.is_file():
        raise FileNotFoundError(f"{src}: no vocab.json (the CTC token list)")
    vocab = _read_json(vocab_path)
    added_path = src / "added_tokens.json"
    if added_path.is_file():
        vocab = {**vocab, **_read_json(added_path)}
    tok_path = src / "tokenizer_config.json"
    tok_cfg = _read_json(tok_path) if tok_path.is_file() else {}
    pad_id = hf.get("pad_token_id")
    if pad_id is None:
        pad_token = tok_cfg.get("pad_token", "<pad>")
        if isinstance(pad_token, dict):  # a serialised AddedToken
            pad_token = pad_token.get("content")
        if pad_token not in vocab:
            raise CheckpointError(f"{src}: config.json has no pad_token_id and {pad_token!r} is not in vocab.json")
        pad_id = vocab[pad_token]
    delimiter = tok_cfg.get("word_delimiter_token") or WORD_BOUNDARY
    token_list, token_notes = hf_tokens(vocab, vocab_size, pad_id, delimiter, str(vocab_path))
    notes += token_notes
    return token_list, pad_id


def load_hf(src, normalize: Optional[bool] = None, tokens: Optional[Sequence[str]] = None) -> Wav2Vec2CTC:
    """A Hugging Face folder as an asrc model (eval mode, ``.tokens`` set)."""
    return read_hf(src, normalize, tokens).build_model()


def convert_hf(src, out_dir, normalize: Optional[bool] = None,
               tokens: Optional[Sequence[str]] = None) -> ImportedCheckpoint:
    """Write an asrc model directory from a Hugging Face folder; returns what was imported."""
    imported = read_hf(src, normalize, tokens)
    imported.save(out_dir)
    return imported
