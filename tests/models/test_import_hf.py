"""Hugging Face import: a tiny random transformers Wav2Vec2ForCTC gives the same logits in asrc.

The helpers here (tiny HF models and folders) are also used by the fairseq and CLI tests.
"""

import json

import pytest
import torch
import transformers

from asrc.errors import CheckpointError
from asrc.models.import_hf import hf_tokens, load_hf, read_hf

LETTERS = ["|", "E", "T", "A", "O", "N", "I", "H"]
HF_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{t: 4 + i for i, t in enumerate(LETTERS)}}
LAYOUTS = {
    "post_ln_group": dict(do_stable_layer_norm=False, feat_extract_norm="group", conv_bias=False),
    "pre_ln_layer": dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True),
}
LEGACY_SPELLING = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}


def tiny_hf_model(layout: str, seed: int = 0, **overrides):
    """A random tiny ``Wav2Vec2ForCTC`` with every tensor perturbed (no parameter left at 0/1)."""
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2Config(
        vocab_size=len(HF_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4, **{**LAYOUTS[layout], **overrides})
    model = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def hf_state_dict(model, spelling: str = "parametrizations"):
    """The model's state dict with the pos conv weight norm spelled the new or the legacy way."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if spelling == "legacy":
        for new, old in LEGACY_SPELLING.items():
            state = {k.replace(new, old): v for k, v in state.items()}
    return state


def save_hf_folder(model, path, weights: str = "safetensors", spelling: str = "parametrizations",
                   do_normalize: bool = False, vocab=None):
    """What ``save_pretrained`` of a model and its processor writes (weights in the chosen format/spelling)."""
    model.save_pretrained(path)
    if weights == "bin" or spelling == "legacy":
        (path / "model.safetensors").unlink()
        state = hf_state_dict(model, spelling)
        if weights == "bin":
            torch.save(state, path / "pytorch_model.bin")
        else:
            from safetensors.torch import save_file

            save_file(state, str(path / "model.safetensors"))
    vocab_file = path / "vocab_src.json"
    vocab_file.write_text(json.dumps(vocab or HF_VOCAB))
    transformers.Wav2Vec2CTCTokenizer(str(vocab_file)).save_pretrained(path)
    vocab_file.unlink()
    transformers.Wav2Vec2FeatureExtractor(do_normalize=do_normalize).save_pretrained(path)
    return path


def hf_logits(model, wav):
    with torch.no_grad():
        return model(wav).logits


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weights,spelling", [("safetensors", "parametrizations"), ("bin", "legacy"),
                                              ("safetensors", "legacy"), ("bin", "parametrizations")])
def test_same_logits_as_transformers(tmp_path, layout, weights, spelling):
    hf = tiny_hf_model(layout)
    save_hf_folder(hf, tmp_path, weights, spelling)
    model = load_hf(tmp_path)
    c = model.config
    assert c.layer_norm_first == (layout == "pre_ln_layer")
    assert c.extractor_mode == ("group_norm" if layout == "post_ln_group" else "layer_norm")
    assert c.conv_layers == [[16, 10, 5], [16, 3, 2], [16, 2, 2]] and not c.normalize_waveform
    assert model.tokens == ["<blank>", "<s>", "</s>", "<unk>"] + LETTERS
    wav = torch.randn(2, 3000)
    ours, lengths = model(wav)
    expected = hf_logits(hf, wav)
    assert ours.shape == expected.shape and lengths.tolist() == [expected.shape[1]] * 2
    assert (ours - expected).abs().max().item() < 1e-4


def test_padded_batch_matches_transformers_single_utterances(tmp_path):
    """Our masks give each utterance of a padded batch the logits HF gives it alone."""
    hf = tiny_hf_model("pre_ln_layer")
    model = load_hf(save_hf_folder(hf, tmp_path))
    wav = torch.randn(2, 3000)
    logits, lengths = model(wav, torch.tensor([3000, 2100]))
    for i, n in enumerate([3000, 2100]):
        expected = hf_logits(hf, wav[i:i + 1, :n])[0]
        assert lengths[i].item() == expected.shape[0]
        assert (logits[i, :lengths[i]] - expected).abs().max().item() < 1e-4


def test_normalize_and_dropout_settings_come_from_the_folder(tmp_path):
    hf = tiny_hf_model("post_ln_group", hidden_dropout=0.2, layerdrop=0.05, mask_time_prob=0.3, apply_spec_augment=True)
    imported = read_hf(save_hf_folder(hf, tmp_path, do_normalize=True))
    c = imported.config
    assert c.normalize_waveform and c.dropout == 0.2 and c.layer_drop == 0.05 and c.mask_time_prob == 0.3
    assert not read_hf(tmp_path, normalize=False).config.normalize_waveform
    # transformers normalises with variance + 1e-7, asrc with + 1e-5: same logits on real-level audio.
    wav = torch.randn(1, 3000)
    normed = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
    ours, _ = imported.build_model()(wav)
    assert (ours - hf_logits(hf, normed)).abs().max().item() < 1e-4


def test_blank_elsewhere_moves_to_index_zero_with_its_head_row(tmp_path):
    vocab = {"<s>": 0, "<unk>": 1, "<pad>": 2, **{t: 3 + i for i, t in enumerate(LETTERS)}, "</s>": 11}
    hf = tiny_hf_model("post_ln_group", pad_token_id=2)
    model = load_hf(save_hf_folder(hf, tmp_path, vocab=vocab))
    assert model.tokens == ["<blank>", "<s>", "<unk>"] + LETTERS + ["</s>"]
    wav = torch.randn(1, 2000)
    expected = hf_logits(hf, wav)[..., [2, 0, 1] + list(range(3, 12))]
    assert (model(wav)[0] - expected).abs().max().item() < 1e-4


def test_missing_masked_spec_embed_is_initialised(tmp_path):
    hf = tiny_hf_model("post_ln_group", mask_time_prob=0.0)
    assert "wav2vec2.masked_spec_embed" not in hf.state_dict()
    imported = read_hf(save_hf_folder(hf, tmp_path))
    assert imported.fresh == ["mask_emb"]
    wav = torch.randn(1, 2000)
    assert (imported.build_model()(wav)[0] - hf_logits(hf, wav)).abs().max().item() < 1e-4


def test_tokens_from_vocab():
    tokens, notes = hf_tokens({"<pad>": 0, " ": 1, "a": 2, "<s>": 4, "</s>": 5}, 4, 0, word_delimiter=" ")
    assert tokens == ["<blank>", "|", "a", "<unused3>"]
    assert any("<unused" in n for n in notes) and any("'<s>', '</s>'" in n for n in notes)
    with pytest.raises(CheckpointError, match="share index 1"):
        hf_tokens({"<pad>": 0, "a": 1, "b": 1}, 2, 0)
    with pytest.raises(CheckpointError, match="pad_token_id=5"):
        hf_tokens({"<pad>": 0, "a": 1}, 2, 5)


def _corrupt(tmp_path, change):
    hf = tiny_hf_model("post_ln_group")
    folder = save_hf_folder(hf, tmp_path, weights="bin", spelling="legacy")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    change(state)
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_unknown_key_is_named(tmp_path):
    extra = "wav2vec2.encoder.layers.0.attention.extra.weight"
    folder = _corrupt(tmp_path, lambda s: s.update({extra: torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unknown keys \['wav2vec2.encoder.layers.0.attention.extra.weight'\]"):
        read_hf(folder)


def test_missing_key_is_named(tmp_path):
    folder = _corrupt(tmp_path, lambda s: s.pop("wav2vec2.encoder.layers.1.feed_forward.output_dense.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \['encoder.layers.1.fc2.bias'\]"):
        load_hf(folder)


def test_wrong_shape_is_named(tmp_path):
    def shrink(state):
        state["wav2vec2.encoder.layers.0.attention.k_proj.weight"] = torch.zeros(32, 16)

    with pytest.raises(CheckpointError, match=r"encoder.layers.0.self_attn.k_proj.weight: checkpoint \(32, 16\) "
                                              r"vs model \(32, 32\)"):
        load_hf(_corrupt(tmp_path, shrink))


def test_both_weight_norm_spellings_at_once_is_an_error(tmp_path):
    def both(state):
        state["wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0"] = \
            state["wav2vec2.encoder.pos_conv_embed.conv.weight_g"]

    with pytest.raises(CheckpointError, match="both map to 'encoder.pos_conv.weight_g'"):
        read_hf(_corrupt(tmp_path, both))


def tiny_hubert(layout: str, cls=None, seed: int = 0, **overrides):
    """A random tiny ``HubertForCTC`` (or ``cls``: ``HubertModel``) of the same shape as :func:`tiny_hf_model`."""
    torch.manual_seed(seed)
    config = transformers.HubertConfig(**{**tiny_hf_model(layout).config.to_dict(), "model_type": "hubert",
                                          **overrides})
    model = (cls or transformers.HubertForCTC)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_hubert_same_logits_as_transformers(tmp_path, layout):
    """HuBERT is wav2vec 2.0's architecture: a HubertForCTC folder imports into the same model."""
    hf = tiny_hubert(layout)
    assert next(iter(hf.state_dict())).startswith("hubert.")
    model = load_hf(save_hf_folder(hf, tmp_path))
    assert model.tokens == ["<blank>", "<s>", "</s>", "<unk>"] + LETTERS
    wav = torch.randn(2, 3000)
    logits, lengths = model(wav, torch.tensor([3000, 2100]))
    assert (logits[0] - hf_logits(hf, wav[:1])[0]).abs().max().item() < 1e-4
    expected = hf_logits(hf, wav[1:, :2100])[0]
    assert lengths[1].item() == expected.shape[0]
    assert (logits[1, :lengths[1]] - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("cls", ["Wav2Vec2ForPreTraining", "Wav2Vec2Model", "HubertModel"])
def test_folder_without_a_head_needs_tokens(tmp_path, cls):
    """A pre-training folder, or a bare base model (keys without the ``wav2vec2.`` / ``hubert.``
    prefix, as facebook/hubert-base-ls960 is saved), imports with a token list: a fresh CTC head,
    the pre-training modules dropped, the encoder exact."""
    if cls == "HubertModel":
        model = tiny_hubert("post_ln_group", transformers.HubertModel)
    else:
        torch.manual_seed(0)
        model = getattr(transformers, cls)(tiny_hf_model("post_ln_group").config).eval()
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no lm_head"):
        read_hf(tmp_path)
    tokens = ["<blank>", "<pad>", "</s>", "<unk>", "|", "A"]
    imported = read_hf(tmp_path, tokens=tokens)
    assert imported.config.vocab_size == 6 and sorted(imported.fresh) == ["ctc_head.bias", "ctc_head.weight"]
    pretraining = {"quantizer", "project_q", "project_hid"} if cls == "Wav2Vec2ForPreTraining" else set()
    assert {k.split(".")[0] for k in imported.dropped} == pretraining
    wav = torch.randn(1, 2000)
    with torch.no_grad():
        expected = getattr(model, "wav2vec2", model)(wav).last_hidden_state
    assert (imported.build_model().encode(wav).x - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("overrides, named", [(dict(feat_proj_layer_norm=False), "feat_proj_layer_norm=false"),
                                              (dict(conv_pos_batch_norm=True), "conv_pos_batch_norm=true")])
def test_hubert_variants_without_an_asrc_counterpart_are_named(tmp_path, overrides, named):
    folder = save_hf_folder(tiny_hubert("post_ln_group", **overrides), tmp_path)
    with pytest.raises(ValueError, match=named):
        read_hf(folder)


def test_other_model_types_are_named(tmp_path):
    folder = save_hf_folder(tiny_hf_model("post_ln_group"), tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "wavlm"}))
    with pytest.raises(ValueError, match="model_type='wavlm' is not one of 'wav2vec2', 'hubert'"):
        read_hf(folder)


def test_unsupported_config_is_named(tmp_path):
    hf = tiny_hf_model("post_ln_group", hidden_act="relu")
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        read_hf(save_hf_folder(hf, tmp_path))


def test_token_list_for_a_folder_with_a_head_is_refused(tmp_path):
    folder = save_hf_folder(tiny_hf_model("post_ln_group"), tmp_path)
    with pytest.raises(ValueError, match="only for folders without"):
        read_hf(folder, tokens=["<blank>", "a"])
