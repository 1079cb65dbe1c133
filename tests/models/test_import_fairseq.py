"""fairseq import: checkpoints built here from a tiny HF model's weights give HF's logits in asrc.

The fairseq layout (key names, cfg/args structure) is written from FACTS.md sections 1-2.
"""

import sys
import types
from argparse import Namespace

import pytest
import torch

from asrc.errors import CheckpointError, ConfigError
from asrc.models.config import BASE_CONV_LAYERS
from asrc.models.import_fairseq import (SHIPPED_CONV_FEATURE_LAYERS, load_fairseq, parse_conv_feature_layers,
                                        read_fairseq, read_fairseq_dict)

from test_import_hf import LAYOUTS, LETTERS, hf_logits, hf_state_dict, tiny_hf_model

FINETUNED = "w2v_encoder.w2v_model."
CONV_FEATURE_LAYERS = "[(16, 10, 5)] + [(16, 3, 2)] + [(16, 2, 2)]"
# HF name fragment -> fairseq name fragment, applied in order.
HF_TO_FAIRSEQ = [
    ("feature_projection.layer_norm.", "layer_norm."),
    ("feature_projection.projection.", "post_extract_proj."),
    ("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0."),
    (".attention.", ".self_attn."),
    (".feed_forward.intermediate_dense.", ".fc1."),
    (".feed_forward.output_dense.", ".fc2."),
    ("masked_spec_embed", "mask_emb"),
]


def fairseq_state_from_hf(hf, prefix=FINETUNED):
    layer_norm_mode = hf.config.feat_extract_norm == "layer"
    state = {}
    for key, value in hf_state_dict(hf, "legacy").items():
        if key.startswith("lm_head."):
            if prefix:
                state["w2v_encoder.proj." + key.split(".")[-1]] = value
            continue
        key = key[len("wav2vec2."):]
        if key.startswith("feature_extractor."):
            i, kind = key.split(".")[2:4]
            norm = f"{i}.2.1." if layer_norm_mode else f"{i}.2."
            key = key.replace(f"{i}.conv.", f"{i}.0.").replace(f"{i}.layer_norm.", norm)
        elif ".layers." in key:
            key = key.replace(".layer_norm.", ".self_attn_layer_norm.")
        for old, new in HF_TO_FAIRSEQ:
            key = key.replace(old, new)
        state[prefix + key] = value
    return state


def arch_fields(hf, old_style=False):
    c = hf.config
    fields = dict(encoder_layers=c.num_hidden_layers, encoder_embed_dim=c.hidden_size,
                  encoder_ffn_embed_dim=c.intermediate_size, encoder_attention_heads=c.num_attention_heads,
                  activation_fn="gelu", layer_norm_first=c.do_stable_layer_norm,
                  conv_feature_layers=CONV_FEATURE_LAYERS,
                  conv_pos=c.num_conv_pos_embeddings, conv_pos_groups=c.num_conv_pos_embedding_groups,
                  extractor_mode="layer_norm" if c.feat_extract_norm == "layer" else "default", conv_bias=c.conv_bias)
    if old_style and fields["extractor_mode"] == "default" and not fields["conv_bias"]:
        # 2020 Namespaces predate these fields; the importer must assume the old defaults.
        del fields["extractor_mode"], fields["conv_bias"]
    return fields


FINETUNE = dict(dropout=0.0, attention_dropout=0.0, final_dropout=0.05, layerdrop=0.05, mask_prob=0.5, mask_length=10,
                mask_channel_prob=0.1, mask_channel_length=64, apply_mask=True, dropout_input=0.0,
                encoder_embed_dim=512)  # pitfall: the top-level encoder_embed_dim is not the width


def finetuned_checkpoint(hf, style):
    state = fairseq_state_from_hf(hf)
    if style == "cfg":
        w2v_args = {"model": {"_name": "wav2vec2", **arch_fields(hf)},
                    "task": {"_name": "audio_pretraining", "normalize": False}}
        cfg = {"common": {"seed": 1}, "task": {"_name": "audio_finetuning", "normalize": False},
               "model": {"_name": "wav2vec_ctc", "w2v_path": "/nowhere/wav2vec_small.pt", "w2v_args": w2v_args,
                         **FINETUNE}}
        return {"args": None, "cfg": cfg, "model": state, "optimizer_history": [], "extra_state": {}}
    w2v_args = Namespace(arch="wav2vec2", normalize=False, **arch_fields(hf, old_style=True))
    args = Namespace(arch="wav2vec_ctc", task="audio_pretraining", w2v_args=w2v_args, normalize=False, **FINETUNE)
    return {"args": args, "model": state, "optimizer_history": [], "extra_state": {}, "last_optimizer_state": {}}


def write_dict(path, symbols=LETTERS):
    path.write_text("".join(f"{s} {1000 - i}\n" for i, s in enumerate(symbols)))
    return path


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("style", ["cfg", "args"])
def test_finetuned_checkpoint_gives_hf_logits(tmp_path, layout, style):
    hf = tiny_hf_model(layout)
    torch.save(finetuned_checkpoint(hf, style), tmp_path / "checkpoint_best.pt")
    write_dict(tmp_path / "dict.ltr.txt")
    imported = read_fairseq(tmp_path / "checkpoint_best.pt")
    c = imported.config
    assert (c.embed_dim, c.num_layers, c.layer_norm_first) == (32, 2, layout == "pre_ln_layer")
    assert c.conv_layers == [[16, 10, 5], [16, 3, 2], [16, 2, 2]] and not c.normalize_waveform
    regularisation = (c.dropout, c.final_dropout, c.layer_drop, c.mask_time_prob, c.mask_channel_prob)
    assert regularisation == (0.0, 0.05, 0.05, 0.5, 0.1)
    assert imported.tokens == ["<blank>", "<pad>", "</s>", "<unk>"] + LETTERS
    assert imported.fresh == [] and imported.dropped == []
    assumed = [n for n in imported.notes if "defaults assumed" in n]
    assert bool(assumed) == (style == "args" and layout == "post_ln_group")
    wav = torch.randn(2, 3000)
    ours, _ = imported.build_model()(wav)
    assert (ours - hf_logits(hf, wav)).abs().max().item() < 1e-4


def test_fairseq_classes_in_the_pickle_need_no_fairseq(tmp_path, monkeypatch):
    hf = tiny_hf_model("post_ln_group")
    ckpt = finetuned_checkpoint(hf, "args")
    fake = types.ModuleType("fairseq.meters")

    class AverageMeter:
        def __init__(self):
            self.sum, self.count = 3.0, 2

    AverageMeter.__module__, AverageMeter.__qualname__ = "fairseq.meters", "AverageMeter"
    fake.AverageMeter = AverageMeter
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "fairseq", types.ModuleType("fairseq"))
        m.setitem(sys.modules, "fairseq.meters", fake)
        ckpt["extra_state"]["train_meters"] = {"train_loss": AverageMeter()}
        torch.save(ckpt, tmp_path / "old.pt")
    assert "fairseq" not in sys.modules
    model = load_fairseq(tmp_path / "old.pt", write_dict(tmp_path / "letters.txt"))
    wav = torch.randn(1, 2000)
    assert (model(wav)[0] - hf_logits(hf, wav)).abs().max().item() < 1e-4


def test_missing_w2v_args_are_read_from_w2v_path(tmp_path):
    hf = tiny_hf_model("pre_ln_layer")
    pretrained = {"args": None, "cfg": {"model": {"_name": "wav2vec2", **arch_fields(hf)}, "task": {"normalize": True}},
                  "model": fairseq_state_from_hf(hf, prefix="")}
    torch.save(pretrained, tmp_path / "wav2vec_small.pt")
    ckpt = finetuned_checkpoint(hf, "cfg")
    ckpt["cfg"]["model"].update(w2v_args=None, w2v_path=str(tmp_path / "elsewhere" / "wav2vec_small.pt"))
    del ckpt["cfg"]["task"]["normalize"]
    torch.save(ckpt, tmp_path / "ft.pt")
    write_dict(tmp_path / "dict.ltr.txt")
    imported = read_fairseq(tmp_path / "ft.pt")  # found beside the fine-tuned checkpoint
    assert imported.config.layer_norm_first and imported.config.normalize_waveform
    (tmp_path / "wav2vec_small.pt").unlink()
    with pytest.raises(CheckpointError, match="w2v_args was not stored.*wav2vec_small.pt"):
        read_fairseq(tmp_path / "ft.pt")


def test_pretrained_checkpoint_drops_pretraining_modules_and_needs_a_dict(tmp_path):
    hf = tiny_hf_model("post_ln_group")
    state = fairseq_state_from_hf(hf, prefix="")
    extra = {"quantizer.vars": torch.zeros(1, 640, 16), "quantizer.weight_proj.weight": torch.zeros(640, 16),
             "quantizer.weight_proj.bias": torch.zeros(640), "project_q.weight": torch.zeros(8, 8),
             "project_q.bias": torch.zeros(8), "final_proj.weight": torch.zeros(8, 32),
             "final_proj.bias": torch.zeros(8)}
    ckpt = {"args": None, "cfg": {"model": {"_name": "wav2vec2", "dropout": 0.3, **arch_fields(hf)},
                                  "task": {"normalize": True}}, "model": {**state, **extra}}
    torch.save(ckpt, tmp_path / "wav2vec_small.pt")
    with pytest.raises(FileNotFoundError, match="without a CTC head.*--dict"):
        read_fairseq(tmp_path / "wav2vec_small.pt")
    imported = read_fairseq(tmp_path / "wav2vec_small.pt", write_dict(tmp_path / "d.txt", LETTERS[:3]))
    assert imported.dropped == sorted(extra)
    assert sorted(imported.fresh) == ["ctc_head.bias", "ctc_head.weight"]
    assert imported.config.vocab_size == 7 and imported.config.normalize_waveform
    assert imported.config.dropout == 0.1  # asrc's default, not the pretraining value
    model = imported.build_model()
    wav = torch.randn(1, 2000)
    with torch.no_grad():
        expected = hf.wav2vec2(wav).last_hidden_state
    assert (model.encode(wav).x - expected).abs().max().item() < 1e-4


def test_bad_checkpoints_name_the_culprits(tmp_path):
    hf = tiny_hf_model("post_ln_group")
    write_dict(tmp_path / "dict.ltr.txt")
    ckpt = finetuned_checkpoint(hf, "cfg")
    ckpt["model"][FINETUNED + "encoder.layers.0.self_attn.rotary.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unknown keys \['w2v_encoder.w2v_model.encoder.layers.0.self_attn.rot"):
        read_fairseq(tmp_path / "extra.pt")

    ckpt = finetuned_checkpoint(hf, "cfg")
    del ckpt["model"][FINETUNED + "encoder.layers.1.final_layer_norm.weight"]
    torch.save(ckpt, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['encoder.layers.1.final_layer_norm.weight'\]"):
        load_fairseq(tmp_path / "missing.pt")

    ckpt = finetuned_checkpoint(hf, "cfg")
    ckpt["cfg"]["model"]["w2v_args"]["model"]["encoder_ffn_embed_dim"] = 48
    torch.save(ckpt, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"layers.0.fc1.weight: checkpoint \(64, 32\) vs model \(48, 32\)"):
        load_fairseq(tmp_path / "shape.pt")

    torch.save(finetuned_checkpoint(hf, "cfg"), tmp_path / "good.pt")
    write_dict(tmp_path / "short.txt", LETTERS[:5])
    with pytest.raises(CheckpointError, match=r"9 tokens .* w2v_encoder.proj has 12 outputs"):
        read_fairseq(tmp_path / "good.pt", tmp_path / "short.txt")


def test_seq2seq_and_other_models_are_refused(tmp_path):
    hf = tiny_hf_model("post_ln_group")
    ckpt = finetuned_checkpoint(hf, "cfg")
    ckpt["model"]["decoder.embed_tokens.weight"] = torch.zeros(12, 32)
    torch.save(ckpt, tmp_path / "s2s.pt")
    with pytest.raises(CheckpointError, match="sequence-to-sequence"):
        read_fairseq(tmp_path / "s2s.pt")
    ckpt = finetuned_checkpoint(hf, "cfg")
    ckpt["cfg"]["model"]["w2v_args"]["model"]["_name"] = "data2vec_audio"
    torch.save(ckpt, tmp_path / "data2vec.pt")
    with pytest.raises(ConfigError, match="'data2vec_audio' is not wav2vec 2.0 or HuBERT"):
        read_fairseq(tmp_path / "data2vec.pt")


def test_hubert_checkpoints(tmp_path):
    """fairseq HuBERT: fine-tuned (hubert_ctc) gives the logits of the same weights; pretrained
    drops its cluster heads (final_proj, label_embs_concat) and takes a dictionary."""
    hf = tiny_hf_model("pre_ln_layer")
    ckpt = finetuned_checkpoint(hf, "cfg")
    ckpt["cfg"]["model"]["_name"] = "hubert_ctc"
    ckpt["cfg"]["model"]["w2v_args"]["model"]["_name"] = "hubert"
    ckpt["cfg"]["model"]["w2v_args"]["task"]["_name"] = "hubert_pretraining"
    torch.save(ckpt, tmp_path / "hubert_ft.pt")
    write_dict(tmp_path / "dict.ltr.txt")
    wav = torch.randn(2, 3000)
    ours, _ = load_fairseq(tmp_path / "hubert_ft.pt")(wav)
    assert (ours - hf_logits(hf, wav)).abs().max().item() < 1e-4

    extra = {"label_embs_concat": torch.zeros(504, 16), "final_proj.weight": torch.zeros(16, 32),
             "final_proj.bias": torch.zeros(16)}
    ckpt = {"args": None, "cfg": {"model": {"_name": "hubert", **arch_fields(hf)}, "task": {"normalize": False}},
            "model": {**fairseq_state_from_hf(hf, prefix=""), **extra}}
    torch.save(ckpt, tmp_path / "hubert_base_ls960.pt")
    imported = read_fairseq(tmp_path / "hubert_base_ls960.pt", write_dict(tmp_path / "d.txt", LETTERS[:3]))
    assert imported.dropped == sorted(extra)
    with torch.no_grad():
        expected = hf.wav2vec2(wav).last_hidden_state
    assert (imported.build_model().encode(wav).x - expected).abs().max().item() < 1e-4


def test_conv_feature_layers_parsed_without_eval():
    assert parse_conv_feature_layers(SHIPPED_CONV_FEATURE_LAYERS) == BASE_CONV_LAYERS
    assert parse_conv_feature_layers("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [[512, 10, 5], [512, 3, 2], [512, 3, 2]]
    assert parse_conv_feature_layers([(8, 3, 2)]) == [[8, 3, 2]]
    for bad in ["__import__('os').system('true')", "[(512, 10, 5)] * 10**9", "[(512, 10)]", "[(512, 10, 5.0)]", "[("]:
        with pytest.raises(ConfigError, match="conv_feature_layers"):
            parse_conv_feature_layers(bad)


def test_fairseq_dictionary(tmp_path):
    path = tmp_path / "dict.ltr.txt"
    path.write_text("| 94802\nE 51860\n<unk> 1 #fairseq:overwrite\n' 1\n")
    assert read_fairseq_dict(path) == ["<blank>", "<pad>", "</s>", "<unk>", "|", "E", "'"]
    path.write_text("| 9\nE 5\nE 4\n")
    with pytest.raises(ValueError, match=r"dict.ltr.txt:3: duplicate symbol 'E'"):
        read_fairseq_dict(path)
    path.write_text("| 9\nE\n")
    with pytest.raises(ValueError, match=r"dict.ltr.txt:2: expected 'SYMBOL COUNT'"):
        read_fairseq_dict(path)
