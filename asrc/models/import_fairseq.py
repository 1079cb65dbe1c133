"""Import fairseq wav2vec 2.0 (and HuBERT) checkpoints without fairseq.

A fairseq ``.pt`` file is a pickle (``torch.load(weights_only=False)``: convert only files you
trust) holding ``model`` (the state dict) and the hyperparameters, either as ``cfg`` (a plain
dict, newer fairseq) or ``args`` (an ``argparse.Namespace``, 2020 checkpoints, which may lack
fields added later: those take the defaults fairseq had then, and each one is reported).
Classes of fairseq itself inside the pickle (old training meters) are read as inert
stand-ins, so fairseq need not be installed.

Layouts:

- fine-tuned CTC (``Wav2Vec2Ctc``): ``w2v_encoder.w2v_model.*`` + the head ``w2v_encoder.proj``;
  the architecture is in ``cfg['model']['w2v_args']['model']`` / ``args.w2v_args`` (the
  top-level ``encoder_embed_dim`` is *not* the width), regularisation in the top level. When
  ``w2v_args`` was not stored, the pretrained checkpoint at ``w2v_path`` is read for it.
- pretrained (``Wav2Vec2Model``): no CTC head. The quantizer, ``project_q``, ``final_proj``
  (and ``target_glu``) serve only the contrastive task and are dropped (reported). A model
  directory needs a head, so a pretrained checkpoint converts only together with a
  dictionary: the head gets one row per token and is freshly initialised, ready for
  fine-tuning; regularisation then takes asrc's defaults (pretraining values are not
  fine-tuning values).
- HuBERT (``hubert`` pretrained, ``hubert_ctc`` fine-tuned): the same modules under the same
  names (its features' LayerNorm, projection, Transformer); its pretraining heads
  (``final_proj``, ``label_embs_concat``) are dropped like wav2vec 2.0's.

Tokens come from fairseq's ``dict.ltr.txt`` (``SYMBOL COUNT`` lines; default: the file of that
name next to the checkpoint): fairseq's Dictionary puts ``<s> <pad> </s> <unk>`` before the
symbols and CTC uses ``<s>`` (index 0) as the blank, which asrc calls ``<blank>``.
"""

import argparse
import ast
import io
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import List, Optional

import torch

from asrc.core.constants import BLANK
from asrc.errors import CheckpointError, ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.models.import_common import WEIGHT_NORM_CONV_PARAM, ImportedCheckpoint, RenameRule, rename_state_dict
from asrc.models.io import torch_load
from asrc.models.wav2vec2 import Wav2Vec2CTC

__all__ = ["read_fairseq", "load_fairseq", "convert_fairseq", "read_fairseq_dict", "parse_conv_feature_layers",
           "fairseq_state_dict_to_asrc"]

FINETUNED_PREFIX = "w2v_encoder.w2v_model."
# fairseq's Dictionary starts with these four; CTC uses <s> (index 0) as the blank.
FAIRSEQ_SPECIAL_NAMES = ("<s>", "<pad>", "</s>", "<unk>")
FAIRSEQ_SPECIALS = [BLANK, "<pad>", "</s>", "<unk>"]

# What a 2020 fairseq assumed for architecture fields its Namespace may lack.
SHIPPED_CONV_FEATURE_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
OLD_ARCH_DEFAULTS = {
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "conv_bias": False,
    "conv_feature_layers": SHIPPED_CONV_FEATURE_LAYERS,
}
EXTRACTOR_MODES = {"default": "group_norm", "layer_norm": "layer_norm"}

# fairseq fine-tuning field -> asrc field (fairseq overrides the pretrained model's values with these).
FINETUNE_REGULARISATION = {
    "dropout": "dropout",
    "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout",
    "dropout_input": "feature_dropout",
    "final_dropout": "final_dropout",
    "layerdrop": "layer_drop",
    "mask_prob": "mask_time_prob",
    "mask_length": "mask_time_length",
    "mask_channel_prob": "mask_channel_prob",
    "mask_channel_length": "mask_channel_length",
}

_MISSING = object()


def _field(obj, name, default=None):
    """``obj[name]`` for mappings (dict, omegaconf), ``obj.name`` otherwise; ``default`` if absent."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _is_config(obj) -> bool:
    return isinstance(obj, (Mapping, argparse.Namespace))


def fairseq_rename_rules(prefix: str) -> List[RenameRule]:
    p = prefix.replace(".", r"\.")
    layer = p + r"encoder\.layers\.(\d+)\."
    return [
        RenameRule(p + r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)",
                   r"feature_extractor.conv_layers.\1.conv.\2"),
        # default mode: GroupNorm at index 2 of the first block; layer_norm mode: LN inside a Sequential.
        RenameRule(p + r"feature_extractor\.conv_layers\.(\d+)\.2\.(?:1\.)?(weight|bias)",
                   r"feature_extractor.conv_layers.\1.norm.\2"),
        RenameRule(p + r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
        RenameRule(p + r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
        RenameRule(p + r"encoder\.pos_conv\.0\." + WEIGHT_NORM_CONV_PARAM, r"encoder.pos_conv.\1"),
        RenameRule(p + r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
        RenameRule(layer + r"(self_attn\.(?:q|k|v|out)_proj|self_attn_layer_norm|fc1|fc2|final_layer_norm)"
                           r"\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
        RenameRule(p + r"mask_emb", "mask_emb"),
        RenameRule(r"w2v_encoder\.proj\.(weight|bias)", r"ctc_head.\1"),
        # The contrastive pretraining task's modules.
        RenameRule(p + r"(quantizer|project_q|final_proj|target_glu)\..*", None),
        RenameRule(p + r"label_embs_concat", None),  # HuBERT's cluster embeddings
    ]


def fairseq_state_dict_to_asrc(state, prefix: str = FINETUNED_PREFIX, source: str = "state_dict"):
    """fairseq wav2vec 2.0 state dict -> ``(asrc state dict, dropped keys)``.

    prefix: ``w2v_encoder.w2v_model.`` for fine-tuned CTC checkpoints, ``""`` for pretrained.
    """
    return rename_state_dict(state, fairseq_rename_rules(prefix), source)


def parse_conv_feature_layers(spec, source: str = "conv_feature_layers") -> List[List[int]]:
    """fairseq's ``conv_feature_layers`` string -> ``[[channels, kernel, stride], ...]``.

    The string is a Python expression of list/tuple literals joined by ``+`` and ``* n``
    (``"[(512, 10, 5)] + [(512, 3, 2)] * 4 + ..."``), which ``ast.literal_eval`` rejects;
    this evaluates exactly that grammar on the syntax tree and nothing else.
    """
    if not isinstance(spec, str):
        layers = spec
    else:
        try:
            tree = ast.parse(spec, mode="eval").body
        except SyntaxError as e:
            raise ConfigError(f"{source}: cannot parse {spec!r}: {e}") from e

        def value(node):
            if isinstance(node, (ast.List, ast.Tuple)):
                return [value(e) for e in node.elts]
            if isinstance(node, ast.Constant) and type(node.value) is int:
                return node.value
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                left, right = value(node.left), value(node.right)
                if isinstance(left, list) and isinstance(right, list):
                    return left + right
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
                left, right = value(node.left), value(node.right)
                if isinstance(left, list) and type(right) is int and 0 <= right <= 1000:
                    return left * right
            raise ConfigError(f"{source}: unsupported expression {ast.unparse(node)!r} in {spec!r}; "
                              "expected list/tuple literals of ints joined by + and * n")

        layers = value(tree)
    if not isinstance(layers, (list, tuple)) or not all(
            isinstance(x, (list, tuple)) and len(x) == 3 and all(type(v) is int for v in x) for x in layers):
        raise ConfigError(f"{source}: {spec!r} is not a list of (channels, kernel, stride)")
    return [list(x) for x in layers]


def read_fairseq_dict(path) -> List[str]:
    """A fairseq dictionary file (``dict.ltr.txt``) -> asrc tokens (blank first)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    symbols = []
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.rsplit(" ", 1)
        flag = False
        if fields[-1] == "#fairseq:overwrite":
            flag, fields = True, fields[0].rsplit(" ", 1)
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'SYMBOL COUNT', got {line!r}")
        symbol = fields[0]
        if symbol in symbols or symbol in FAIRSEQ_SPECIAL_NAMES:
            if not flag:  # fairseq's rule: a repeated symbol needs the overwrite flag, keeps its index
                raise ValueError(f"{path}:{lineno}: duplicate symbol {symbol!r}")
            continue
        symbols.append(symbol)
    if not symbols:
        raise ValueError(f"{path}: no symbols")
    return FAIRSEQ_SPECIALS + symbols


class _FairseqStandIn:
    """Replaces a class of fairseq found in a pickle (e.g. old training meters); keeps its state."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if module.split(".")[0] != "fairseq":
                raise
            return type(name, (_FairseqStandIn,), {"__module__": module})


# A pickle module for torch.load(pickle_module=...): the standard one with a tolerant Unpickler.
_tolerant_pickle = types.ModuleType("asrc_fairseq_pickle")
_tolerant_pickle.Unpickler = _Unpickler
_tolerant_pickle.load = lambda f, **kw: _Unpickler(f, **kw).load()
_tolerant_pickle.loads = lambda b, **kw: _Unpickler(io.BytesIO(b), **kw).load()
_tolerant_pickle.__name__ = "pickle"


def _torch_load(path: Path) -> dict:
    try:
        ckpt = torch_load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"{path}: the pickle needs the module {e.name!r}; "
                              "install it to read this checkpoint") from e
    if not isinstance(ckpt, Mapping) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    return ckpt


def _hyperparameters(ckpt, path: Path):
    """``(model cfg, task cfg)`` of a checkpoint: ``cfg`` dict (newer fairseq) or ``args`` Namespace."""
    cfg, args = ckpt.get("cfg"), ckpt.get("args")
    if _is_config(cfg) and _field(cfg, "model") is not None:
        return _field(cfg, "model"), _field(cfg, "task")
    if _is_config(args):
        return args, args
    raise CheckpointError(f"{path}: neither 'cfg' nor 'args' holds the model hyperparameters")


def _pretrained_hyperparameters(model_cfg, path: Path):
    """Architecture + task cfg of the wav2vec 2.0 model inside a fine-tuned checkpoint."""
    w2v_args = _field(model_cfg, "w2v_args")
    if w2v_args is None:
        w2v_path = _field(model_cfg, "w2v_path")
        candidates = [Path(w2v_path), path.parent / Path(w2v_path).name] if w2v_path else []
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(f"{path}: w2v_args was not stored; fairseq would read it from w2v_path={w2v_path!r}, "
                                  f"which is not at {[str(c) for c in candidates]}")
        return _hyperparameters(_torch_load(found), found)
    inner = _field(w2v_args, "model")
    if _is_config(inner):
        return inner, _field(w2v_args, "task")
    return w2v_args, w2v_args  # a flat Namespace (2020)


def _architecture(arch, source: str, notes: List[str]) -> dict:
    """Architecture fields of a fairseq wav2vec 2.0 model cfg, old defaults filled in (noted)."""
    name = _field(arch, "_name") or _field(arch, "arch")
    if name is not None and not str(name).startswith(("wav2vec2", "hubert")):
        raise ConfigError(f"{source}: model {name!r} is not wav2vec 2.0 or HuBERT")
    fields, assumed = {}, []
    for key, default in OLD_ARCH_DEFAULTS.items():
        v = _field(arch, key, _MISSING)
        if v is _MISSING or v is None:
            v = default
            assumed.append(f"{key}={default!r}")
        fields[key] = v
    if assumed:
        notes.append(f"{source}: fields absent, fairseq's 2020 defaults assumed: {', '.join(assumed)}")
    problems = []
    if fields["activation_fn"] != "gelu":
        problems.append(f"activation_fn={fields['activation_fn']!r} (only 'gelu' is supported)")
    if fields["extractor_mode"] not in EXTRACTOR_MODES:
        problems.append(f"extractor_mode={fields['extractor_mode']!r} is not one of {sorted(EXTRACTOR_MODES)}")
    if _field(arch, "layer_type", "transformer") != "transformer":
        problems.append(f"layer_type={_field(arch, 'layer_type')!r} (only 'transformer' is supported)")
    if _field(arch, "pos_conv_depth", 1) != 1:
        problems.append(f"pos_conv_depth={_field(arch, 'pos_conv_depth')} (only 1 is supported)")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return fields


def read_fairseq(path, dict_path=None, normalize: Optional[bool] = None) -> ImportedCheckpoint:
    """Read a fairseq wav2vec 2.0 checkpoint (fine-tuned CTC or pretrained).

    dict_path: fairseq dictionary; default ``dict.ltr.txt`` beside the checkpoint.
    normalize: overrides the checkpoint's task ``normalize``.
    """
    path = Path(path)
    ckpt = _torch_load(path)
    state = ckpt["model"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'model' is not a state dict")
    notes = []
    model_cfg, task_cfg = _hyperparameters(ckpt, path)

    if any(k.startswith("decoder.") or k.startswith("encoder.w2v_model.") for k in state):
        raise CheckpointError(f"{path}: a sequence-to-sequence wav2vec 2.0 model; only CTC models are supported")
    finetuned = any(k.startswith(FINETUNED_PREFIX) for k in state)
    if finetuned:
        arch_cfg, pre_task_cfg = _pretrained_hyperparameters(model_cfg, path)
    else:
        arch_cfg, pre_task_cfg = model_cfg, task_cfg
    arch = _architecture(arch_cfg, str(path), notes)

    renamed, dropped = fairseq_state_dict_to_asrc(dict(state), FINETUNED_PREFIX if finetuned else "", str(path))

    if normalize is None:
        normalize = _field(task_cfg, "normalize")
        if normalize is None:
            normalize = _field(pre_task_cfg, "normalize")
        if normalize is None:
            normalize = False
            notes.append("no task 'normalize' in the checkpoint; normalize_waveform=false (fairseq's default)")

    regularisation = {}
    if finetuned:
        for fs_key, key in FINETUNE_REGULARISATION.items():
            v = _field(model_cfg, fs_key)
            if v is not None:
                regularisation[key] = v
        if _field(model_cfg, "apply_mask") is False:
            regularisation.update(mask_time_prob=0.0, mask_channel_prob=0.0)
    else:
        notes.append("pretrained checkpoint: dropout/masking take asrc's defaults; "
                     "set fine-tuning values in config.yaml")

    dict_path = Path(dict_path) if dict_path is not None else path.parent / "dict.ltr.txt"
    tokens = read_fairseq_dict(dict_path) if dict_path.is_file() else None
    fresh = [] if "mask_emb" in renamed else ["mask_emb"]
    if "ctc_head.weight" in renamed:
        vocab_size = renamed["ctc_head.weight"].shape[0]
        if tokens is None:
            raise FileNotFoundError(f"{path}: no dictionary at {dict_path} for the {vocab_size} CTC outputs; "
                                    "pass the fine-tuning dict.ltr.txt (asrc-convert --dict)")
        if len(tokens) != vocab_size:
            raise CheckpointError(f"{dict_path}: {len(tokens)} tokens (4 specials + {len(tokens) - 4} symbols) but "
                                  f"the CTC head w2v_encoder.proj has {vocab_size} outputs")
    elif tokens is None:
        raise FileNotFoundError(f"{path}: pretrained checkpoint without a CTC head and no dictionary at {dict_path}; "
                                "pass one (asrc-convert --dict dict.ltr.txt) to get a model with an untrained head")
    else:
        vocab_size = len(tokens)
        fresh += ["ctc_head.weight", "ctc_head.bias"]

    config = Wav2Vec2Config(
        conv_layers=parse_conv_feature_layers(arch["conv_feature_layers"], f"{path}: conv_feature_layers"),
        extractor_mode=EXTRACTOR_MODES[arch["extractor_mode"]],
        conv_bias=bool(arch["conv_bias"]),
        embed_dim=int(arch["encoder_embed_dim"]),
        ffn_dim=int(arch["encoder_ffn_embed_dim"]),
        num_heads=int(arch["encoder_attention_heads"]),
        num_layers=int(arch["encoder_layers"]),
        layer_norm_first=bool(arch["layer_norm_first"]),
        pos_conv_kernel=int(arch["conv_pos"]),
        pos_conv_groups=int(arch["conv_pos_groups"]),
        normalize_waveform=bool(normalize),
        vocab_size=vocab_size,
        **regularisation,
    )
    # fairseq has no projection when the conv channels equal the width; asrc's is then the identity.
    if "feature_projection.projection.weight" not in renamed and config.conv_dim == config.embed_dim:
        renamed["feature_projection.projection.weight"] = torch.eye(config.embed_dim)
        renamed["feature_projection.projection.bias"] = torch.zeros(config.embed_dim)
        notes.append("no post_extract_proj (conv channels = width): identity feature projection")
    return ImportedCheckpoint(str(path), config, renamed, tokens, fresh, dropped, notes)


def load_fairseq(path, dict_path=None, normalize: Optional[bool] = None) -> Wav2Vec2CTC:
    """A fairseq checkpoint as an asrc model (eval mode, ``.tokens`` set)."""
    return read_fairseq(path, dict_path, normalize).build_model()


def convert_fairseq(path, out_dir, dict_path=None, normalize: Optional[bool] = None) -> ImportedCheckpoint:
    """Write an asrc model directory from a fairseq checkpoint; returns what was imported."""
    imported = read_fairseq(path, dict_path, normalize)
    imported.save(out_dir)
    return imported
