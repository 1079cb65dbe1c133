"""Distillation on untranscribed audio: teacher losses on every utterance, CTC only where there is a transcript."""

import shutil
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

from espnet_helpers import COMMON, copy_model, write_yaml


def _batch(vocab=32, frames=(12, 9, 7), labels=(3, 0, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(frames), max(frames), vocab, generator=g, requires_grad=True)
    text = torch.full((len(frames), max(labels)), -1, dtype=torch.long)
    for i, n in enumerate(labels):
        text[i, :n] = torch.randint(5, vocab, (n,), generator=g)
    return logits, torch.tensor(frames), text, torch.tensor(labels)


def test_ctc_only_on_transcribed_utterances():
    from asrc.espnet.models import transcribed_ctc_loss

    logits, lengths, text, text_lengths = _batch()
    loss = transcribed_ctc_loss(logits, lengths, text, text_lengths)
    # the same as CTC over utterances 0 and 2 alone (F.ctc_loss, summed, per target token)
    log_probs = F.log_softmax(logits, -1)
    expect = sum(F.ctc_loss(log_probs[i, : lengths[i]], text[i, : text_lengths[i]], lengths[i : i + 1],
                            text_lengths[i : i + 1], blank=0, reduction="sum") for i in (0, 2)) / 5
    torch.testing.assert_close(loss, expect)
    # the untranscribed utterance gets no gradient from it (not the loss of an all-blank output)
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    # a batch with no transcript at all: 0, still differentiable
    logits, lengths, text, text_lengths = _batch(labels=(0, 0, 0))
    zero = transcribed_ctc_loss(logits, lengths, text[:, :0], text_lengths)
    assert zero.item() == 0 and zero.requires_grad


def test_distill_model_mixed_batch(trained_teacher, espnet_ready):
    """The whole distillation objective on a batch mixing transcribed and untranscribed utterances."""
    from asrc.distill.losses import kd_loss
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.espnet.models import AsrcDistillModel, transcribed_ctc_loss
    from asrc.models import load

    teacher_dir = trained_teacher["model"]
    tokens = load(teacher_dir).tokens
    torch.manual_seed(0)
    encoder = AsrcWav2Vec2Encoder(input_size=1, init=str(teacher_dir), layer_init="every_k",
                                  config={"num_layers": 1})
    model = AsrcDistillModel(len(tokens), tokens, encoder, teacher=str(teacher_dir), temperature=2.0,
                             loss_weights={"kd_loss": 0.5, "student_loss": 0.5}).train()
    wav = torch.randn(3, 6000) * 0.1
    wav[1, 4000:] = 0
    speech_lengths = torch.tensor([6000, 4000, 5000])
    text = torch.tensor([[6, 7, 8], [-1, -1, -1], [9, 10, -1]])
    text_lengths = torch.tensor([3, 0, 2])
    loss, stats, _ = model(wav, speech_lengths, text, text_lengths)
    with torch.no_grad():
        s_out = model.encoder.encode(wav, speech_lengths)
        s_logits = model.encoder.ctc_logits(s_out.x)
        t_out = model.teacher.encode(wav, speech_lengths)
        t_logits = model.teacher.ctc_head(t_out.x)
    ctc = transcribed_ctc_loss(s_logits, s_out.lengths, text, text_lengths)
    kd = kd_loss(s_logits, t_logits, s_out.lengths, 2.0)  # all three utterances, padding masked
    torch.testing.assert_close(stats["student_loss"].reshape(()), ctc, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stats["kd_loss"].reshape(()), kd, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loss.reshape(()), 0.5 * ctc + 0.5 * kd, atol=1e-4, rtol=1e-4)
    # padding is masked: what lies beyond an utterance's length changes nothing
    wav3 = wav.clone()
    wav3[1, 4000:] = torch.randn(2000)
    torch.testing.assert_close(model(wav3, speech_lengths, text, text_lengths)[0], loss, atol=1e-5, rtol=1e-5)
    # the untranscribed utterance's KD matters: changing its audio changes the loss
    wav2 = wav.clone()
    wav2[1, :4000] = torch.randn(4000) * 0.1
    assert not torch.isclose(model(wav2, speech_lengths, text, text_lengths)[0], loss).any()


def _untranscribed_copy(src, dst, keep_every=2):
    shutil.copytree(src, dst)
    lines = (dst / "text").read_text().splitlines()
    (dst / "text").write_text("".join(line + "\n" for i, line in enumerate(lines) if i % keep_every == 0))
    return dst


def test_distillation_trains_on_untranscribed_audio(trained_teacher, corpus, tmp_path):
    from asrc.bin.train import main

    teacher_dir = copy_model(trained_teacher["model"], tmp_path / "teacher")
    train = _untranscribed_copy(corpus["train"], tmp_path / "train_half")
    conf = dict(COMMON, max_epoch=1, train_data_dir=str(train), valid_data_dir=str(corpus["valid"]),
                encoder="asrc_wav2vec2",
                encoder_conf={"init": str(teacher_dir), "layer_init": "every_k", "config": {"num_layers": 1}},
                model="asrc_distill", model_conf={"teacher": str(teacher_dir), "temperature": 2.0,
                                                  "loss_weights": {"kd_loss": 0.5, "student_loss": 0.5}})
    rc = main(["--config", str(write_yaml(tmp_path / "d.yaml", conf)), "--exp_dir", str(tmp_path / "exp")])
    assert rc == 0
    exp = tmp_path / "exp" / "d"
    used = yaml.safe_load((exp / "config.yaml").read_text())["train_data_path_and_name_and_type"]
    written = (exp / "shapes" / "train" / "text").read_text().splitlines()
    assert used[1][0] == str(exp / "shapes" / "train" / "text")
    n = len((corpus["train"] / "wav.scp").read_text().splitlines())
    assert len(written) == n and sum(1 for line in written if " " not in line) == n // 2
    assert len((exp / "shapes" / "train" / "speech_shape").read_text().splitlines()) == n
    assert "untranscribed utterance(s): teacher losses only" in (exp / "train.log").read_text()


@pytest.mark.parametrize("model, mode", [("asrc_ctc", "train"), ("asrc_distill", "valid")])
def test_untranscribed_audio_is_refused_where_it_cannot_be_used(trained_teacher, corpus, tmp_path, capsys, model, mode):
    from asrc.bin.train import main

    teacher_dir = copy_model(trained_teacher["model"], tmp_path / "teacher")
    half = _untranscribed_copy(corpus[mode], tmp_path / "half")
    conf = dict(COMMON, max_epoch=1, train_data_dir=str(half if mode == "train" else corpus["train"]),
                valid_data_dir=str(half if mode == "valid" else corpus["valid"]), encoder="asrc_wav2vec2",
                encoder_conf={"init": str(teacher_dir)}, model=model,
                **({"model_conf": {"teacher": str(teacher_dir)}} if model == "asrc_distill" else {}))
    rc = main(["--config", str(write_yaml(tmp_path / "c.yaml", conf)), "--exp_dir", str(tmp_path / "exp")])
    err = capsys.readouterr().err
    assert rc != 0 and "have no transcript in text" in err and str(half) in err, err
    print(err, file=sys.stderr)
