"""The encoder and model classes on their own (no trainer)."""

import pytest
import torch

from asrc.data.tokens import letter_tokens
from asrc.errors import ConfigError
from asrc.models import Wav2Vec2Config, Wav2Vec2CTC, load, save_model_dir

TOKENS = letter_tokens()
TINY_ENCODER = {}


@pytest.fixture(autouse=True)
def tiny_encoder(tiny_encoder_config):
    TINY_ENCODER.clear()
    TINY_ENCODER.update(tiny_encoder_config)


@pytest.fixture
def tiny_dir(tmp_path, tiny_encoder_config):
    torch.manual_seed(0)
    model = Wav2Vec2CTC(Wav2Vec2Config(**tiny_encoder_config, vocab_size=len(TOKENS)), TOKENS)
    save_model_dir(model, tmp_path / "tiny", TOKENS)
    return tmp_path / "tiny"

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def batch(n=2, samples=4000):
    torch.manual_seed(1)
    speech = torch.randn(n, samples)
    lengths = torch.tensor([samples] + [samples - 1000] * (n - 1))
    text = torch.tensor([[5, 6, 4, 7], [8, 9, -1, -1]][:n])
    return dict(speech=speech, speech_lengths=lengths, text=text, text_lengths=torch.tensor([4, 2][:n]))


def test_registered_in_espnet_choice_tables(espnet_ready):
    from espnet2.tasks import asr

    from asrc.espnet import AsrcCTCModel, AsrcDistillModel, AsrcWav2Vec2Encoder

    assert asr.encoder_choices.get_class("asrc_wav2vec2") is AsrcWav2Vec2Encoder
    assert asr.model_choices.get_class("asrc_ctc") is AsrcCTCModel
    assert asr.model_choices.get_class("asrc_distill") is AsrcDistillModel


def test_encoder_config_resolution(espnet_ready, tiny_dir):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder, resolve_encoder_config

    with pytest.raises(ConfigError, match="input_size 1"):
        AsrcWav2Vec2Encoder(input_size=80, config=TINY_ENCODER)
    with pytest.raises(ConfigError, match="unknown Wav2Vec2Config keys \\['num_layer'\\]"):
        resolve_encoder_config({"num_layer": 2})
    # Fine-tuning may change regularisation only.
    cfg = resolve_encoder_config({"layer_drop": 0.1, "mask_time_prob": 0.5}, init=str(tiny_dir))
    assert (cfg.layer_drop, cfg.mask_time_prob, cfg.num_layers) == (0.1, 0.5, 2)
    with pytest.raises(ConfigError, match="changes \\['num_layers'\\]"):
        resolve_encoder_config({"num_layers": 1}, init=str(tiny_dir))
    assert resolve_encoder_config({"num_layers": 1}, init=str(tiny_dir), layer_init="every_k").num_layers == 1
    with pytest.raises(ConfigError, match="needs encoder_conf.init"):
        resolve_encoder_config({}, layer_init="every_k")
    with pytest.raises(FileNotFoundError, match="not an asrc model directory"):
        resolve_encoder_config({}, init=str(tiny_dir / "missing"))


def test_encoder_loads_init_exactly_and_reads_raw_waveform(espnet_ready, tiny_dir):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.models import load

    enc = AsrcWav2Vec2Encoder(init=str(tiny_dir), config={"dropout": 0.2}).eval()
    ref = load(tiny_dir)
    b = batch()
    x, lengths, _ = enc(b["speech"][..., None], b["speech_lengths"])  # ESPnet may give [B, T, 1]
    logits, ref_lengths = ref(b["speech"], b["speech_lengths"])
    assert torch.equal(lengths, ref_lengths)
    assert torch.allclose(enc.ctc_logits(x), logits, atol=1e-6)
    assert enc.config.dropout == 0.2 and enc.init_tokens == TOKENS and enc.output_size() == 32


def test_relative_init_names_the_current_directory(espnet_ready, tiny_dir, tmp_path, monkeypatch):
    """config.yaml keeps encoder_conf.init as given (e.g. ``teacher``, relative to the recipe
    folder): used from elsewhere (Speech2Text), the error says where it looked and why."""
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder, resolve_encoder_config

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FileNotFoundError) as e:
        AsrcWav2Vec2Encoder(init="tiny", config={"dropout": 0.2})
    msg = str(e.value)
    assert msg.startswith("encoder_conf.init: tiny is not an asrc model directory")
    assert f"relative to the current directory {elsewhere}" in msg and str(elsewhere / "tiny") in msg
    assert "recipe folder" in msg
    # An absolute path needs no such note; from the right folder the relative path works.
    with pytest.raises(FileNotFoundError) as e:
        resolve_encoder_config({}, init=str(tmp_path / "missing"))
    assert "current directory" not in str(e.value)
    monkeypatch.chdir(tmp_path)
    assert resolve_encoder_config({}, init="tiny").num_layers == 2


def test_multi_channel_audio_is_named(espnet_ready, tiny_dir):
    """Speech2Text adds the batch axis: a stereo [sample, 2] array arrives as [1, sample, 2]."""
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder, as_waveform

    enc = AsrcWav2Vec2Encoder(init=str(tiny_dir)).eval()
    wav = batch(n=1)["speech"]
    lengths = torch.tensor([wav.shape[1]])
    for speech, layout, channels in ((torch.stack([wav, wav], -1), "[batch, sample, channel]", 2),
                                     (torch.stack([wav] * 6, 1), "[batch, channel, sample]", 6)):
        with pytest.raises(ValueError) as e:
            enc(speech, lengths)
        msg = str(e.value)
        assert "multi-channel audio" in msg and layout in msg and f"{channels} channels" in msg
        assert "mono" in msg and "mix it down" in msg and "--input_size" not in msg
    # Mono as [batch, sample] or [batch, sample, 1] is fine; other shapes keep the general message.
    assert as_waveform(wav[..., None]).shape == wav.shape
    with pytest.raises(ValueError, match="expected a raw waveform \\[batch, sample\\]"):
        as_waveform(torch.zeros(1, 4000, 80))  # filter-bank features
    with pytest.raises(ValueError, match="expected a raw waveform"):
        as_waveform(torch.zeros(4000))


def test_feature_extractor_frozen_for_the_first_updates(espnet_ready):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder

    enc = AsrcWav2Vec2Encoder(config={**TINY_ENCODER, "vocab_size": 32}, freeze_feature_updates=2).train()
    conv = enc.model.feature_extractor.conv_layers[0].conv.weight
    b = batch()

    def step():
        enc.zero_grad()
        x, _, _ = enc(b["speech"], b["speech_lengths"])
        x.sum().backward()
        return conv.grad

    for _ in range(2):
        assert step() is None and enc.features_frozen()
        assert enc.model.feature_projection.projection.weight.grad is not None
        enc.on_optimizer_step()
    assert step() is not None and not enc.features_frozen()
    assert int(enc.num_updates) == 2 and "num_updates" in enc.state_dict()


def test_masks_start_after_the_given_update(espnet_ready):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder

    cfg = {**TINY_ENCODER, "vocab_size": 32, "mask_time_prob": 0.5, "mask_time_length": 2}
    enc = AsrcWav2Vec2Encoder(config={**cfg, "layer_drop": 0.0}, mask_after_updates=2).train()
    b = batch()
    reference = enc.eval().encode(b["speech"], b["speech_lengths"]).x
    enc.train()
    for _ in range(2):  # no dropout in the tiny config: without masks, training mode = eval mode
        assert enc.masks_active() is False
        assert torch.allclose(enc.encode(b["speech"], b["speech_lengths"]).x, reference, atol=1e-6)
        enc.on_optimizer_step()
    assert enc.masks_active() and not enc.eval().masks_active()
    enc.train()
    assert not torch.allclose(enc.encode(b["speech"], b["speech_lengths"]).x, reference, atol=1e-3)
    with pytest.raises(ConfigError, match="mask_after_updates=-1"):
        AsrcWav2Vec2Encoder(config=cfg, mask_after_updates=-1)


def test_ctc_model_checks(espnet_ready, tiny_dir):
    from espnet2.asr.specaug.specaug import SpecAug

    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.espnet.models import AsrcCTCModel

    enc = AsrcWav2Vec2Encoder(init=str(tiny_dir))
    with pytest.raises(ConfigError, match="--specaug none"):
        AsrcCTCModel(32, TOKENS, enc, specaug=SpecAug(time_mask_width_range=(0, 5)))
    with pytest.raises(ConfigError, match="unknown model_conf keys \\['teacher'\\]"):
        AsrcCTCModel(32, TOKENS, enc, teacher="x")
    with pytest.raises(ConfigError, match="token sets differ"):
        AsrcCTCModel(32, TOKENS[:5] + TOKENS[6:] + [TOKENS[5]], enc)
    model = AsrcCTCModel(32, TOKENS, enc)
    # ESPnet's CTC module (its inference tools) uses the asrc head itself.
    assert model.ctc.ctc_lo is enc.model.ctc_head
    loss, stats, weight = model(**batch())
    assert stats["loss"] == stats["student_loss"] and stats["cer"] is None and int(weight) == 2
    model.eval()
    _, stats, _ = model(**batch())
    # The CER by hand: greedy output of the saved model, edit distance to the labels.
    b = batch()
    logits, lengths = load(tiny_dir)(b["speech"], b["speech_lengths"])
    errors = total = 0
    for i in range(2):
        best = [int(k) for k in logits[i, :lengths[i]].argmax(-1)]
        hyp = [k for j, k in enumerate(best) if k != 0 and (j == 0 or k != best[j - 1])]
        ref = b["text"][i, :b["text_lengths"][i]].tolist()
        errors, total = errors + edit_distance(hyp, ref), total + len(ref)
    assert float(stats["cer"]) == pytest.approx(errors / total)  # a random model inserts a lot: may exceed 1
    assert errors > 0


def test_greedy_error_counts(espnet_ready):
    from asrc.espnet.models import greedy_error_counts

    best = torch.tensor([[0, 5, 5, 0, 6, 6, 4, 9], [7, 7, 0, 7, 0, 0, 0, 0]])
    logits = torch.nn.functional.one_hot(best, 10).float()
    lengths = torch.tensor([7, 4])  # frame 7 of utterance 0 (a 9) is padding
    targets = torch.tensor([[5, 6, 7], [7, 7, -1]])
    # utterance 0: 5 6 4 vs 5 6 7 -> 1 substitution; utterance 1: 7 7 (repeat kept by the blank) -> 0
    assert greedy_error_counts(logits, lengths, targets, torch.tensor([3, 2])) == (1, 5)


def test_distill_model_keeps_teacher_frozen_and_outside(espnet_ready, tiny_dir):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.espnet.models import AsrcDistillModel

    enc = AsrcWav2Vec2Encoder(config={**TINY_ENCODER, "num_layers": 1, "conv_groups": 2, "vocab_size": 32})
    weights = {"kd_loss": 1.0, "student_loss": 0.5, "hidden_loss": 0.25, "cos_embed_loss": 0.1, "features_pen": 0.01}
    model = AsrcDistillModel(32, TOKENS, enc, teacher=str(tiny_dir), temperature=2.0, loss_weights=weights)
    assert not any(k.startswith("teacher") for k in model.state_dict())
    assert {id(p) for p in model.parameters()}.isdisjoint({id(p) for p in model.teacher.parameters()})
    assert model.hidden_predictor.layer_map == {1: 2}
    model.eval()  # deterministic, for the terms computed by hand below
    loss, stats, _ = model(**batch())
    expected = independent_distill_terms(model, batch(), temperature=2.0)
    for k, value in expected.items():
        assert float(stats[k]) == pytest.approx(value, rel=1e-4, abs=1e-6), k
    assert float(loss.detach()) == pytest.approx(sum(w * expected[k] for k, w in weights.items()), rel=1e-4)
    model.train()
    assert not model.teacher.training
    loss, stats, _ = model(**batch())
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    model.to(torch.float64)
    assert next(model.teacher.parameters()).dtype == torch.float64


def independent_distill_terms(model, b, temperature):
    """The five loss terms, utterance by utterance on the valid frames (no masks), from torch's
    own ctc_loss, kl_div and cosine_similarity."""
    import torch.nn.functional as F

    with torch.no_grad():
        teacher = model.teacher.encode(b["speech"], b["speech_lengths"], output_hidden_states=True)
        t_logits = model.teacher.ctc_head(teacher.x)
        student = model.encoder.encode(b["speech"], b["speech_lengths"], output_hidden_states=True,
                                       return_features=True)
        s_logits = model.encoder.ctc_logits(student.x)
        frames = student.lengths.tolist()
        ctc = kl = cos = feat = l1 = cos_hidden = 0.0
        for i, n in enumerate(frames):
            target = b["text"][i, :b["text_lengths"][i]]
            log_probs = F.log_softmax(s_logits[i, :n], -1)
            ctc += float(F.ctc_loss(log_probs, target, [n], [len(target)], blank=0, reduction="sum"))
            kl += float(F.kl_div(F.log_softmax(s_logits[i, :n] / temperature, -1),
                                 F.log_softmax(t_logits[i, :n] / temperature, -1), log_target=True,
                                 reduction="sum"))
            cos += float((1 - F.cosine_similarity(s_logits[i, :n], t_logits[i, :n], dim=-1)).sum())
            feat += float(student.features[i, :n].square().mean(-1).sum())
            for s, t in model.hidden_predictor.layer_map.items():
                head = model.hidden_predictor.heads[f"s{s}_t{t}"]
                prediction, target_state = head(student.hidden_states[s][i, :n]), teacher.hidden_states[t][i, :n]
                l1 += float((prediction - target_state).abs().mean(-1).sum())
                cos_hidden += float(-F.logsigmoid(F.cosine_similarity(prediction, target_state, dim=-1)).sum())
    total, layers = sum(frames), len(model.hidden_predictor.layer_map)
    return {"student_loss": ctc / float(b["text_lengths"].sum()), "kd_loss": kl / total * temperature ** 2,
            "cos_embed_loss": cos / total, "features_pen": feat / total,
            "hidden_loss": (l1 + cos_hidden) / total / layers}


@pytest.mark.parametrize("conf,match", [
    (dict(teacher=None), "needs model_conf.teacher"),
    (dict(teacher="/nonexistent/teacher"), "not an asrc model directory"),
    (dict(loss_weights={"kd": 1}), "unknown loss terms"),
    (dict(temperature=0), "temperature"),
    (dict(teacher_layer_map={1: 2}), "hidden_loss is 0"),
])
def test_distill_model_errors(espnet_ready, tiny_dir, conf, match):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.espnet.models import AsrcDistillModel

    enc = AsrcWav2Vec2Encoder(config={**TINY_ENCODER, "vocab_size": 32})
    with pytest.raises((ConfigError, FileNotFoundError), match=match):
        AsrcDistillModel(32, TOKENS, enc, **{"teacher": str(tiny_dir), **conf})


def test_distill_model_frame_rate_mismatch(espnet_ready, tiny_dir):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.espnet.models import AsrcDistillModel

    strides = [[16, 10, 5], [16, 4, 4], [16, 4, 4], [16, 4, 4]]
    enc = AsrcWav2Vec2Encoder(config={**TINY_ENCODER, "conv_layers": strides, "vocab_size": 32})
    with pytest.raises(ConfigError, match="different frame counts"):
        AsrcDistillModel(32, TOKENS, enc, teacher=str(tiny_dir))


@pytest.mark.parametrize("layer_init,expected", [("first_k", {1: 1}), ("every_k", {1: 2}), ("last_k", {1: 2}), ([2], {1: 2})])
def test_hidden_loss_pairs_follow_the_student_initialisation(espnet_ready, tiny_dir, layer_init, expected):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.espnet.models import AsrcDistillModel

    enc = AsrcWav2Vec2Encoder(init=str(tiny_dir), layer_init=layer_init, config={"num_layers": 1})
    model = AsrcDistillModel(32, TOKENS, enc, teacher=str(tiny_dir), loss_weights={"hidden_loss": 1.0})
    assert model.hidden_predictor.layer_map == expected


def test_student_front_end_calibrated_on_speech(espnet_ready, tiny_dir, corpus):
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder
    from asrc.models.student import build_student
    from asrc.core.batching import pad_waveforms
    from asrc.core.audio import read_waveforms

    student = {"num_layers": 1, "conv_groups": 2}
    enc = AsrcWav2Vec2Encoder(init=str(tiny_dir), layer_init="every_k", config=student,
                              calibration=str(corpus["train"]))
    assert f"of {corpus['train']}" in enc.init_report.calibration
    pink = AsrcWav2Vec2Encoder(init=str(tiny_dir), layer_init="every_k", config=student)
    assert "pink noise" in pink.init_report.calibration
    # Each holds the kernels build_student fits on its calibration input: 16 utterances of the
    # training data, or the default pink noise.
    teacher = load(tiny_dir)
    waveforms, _ = read_waveforms(corpus["train"], max_utterances=16)
    wav, lengths = pad_waveforms(waveforms)
    config = teacher.config.replace(**student)
    on_speech, _ = build_student(teacher, config, calibration=wav, calibration_lengths=lengths)
    on_pink, _ = build_student(teacher, config)
    for i in range(1, len(config.conv_layers)):
        grouped = f"feature_extractor.conv_layers.{i}.conv.weight"
        assert torch.equal(enc.model.state_dict()[grouped], on_speech.state_dict()[grouped]), i
        assert torch.equal(pink.model.state_dict()[grouped], on_pink.state_dict()[grouped]), i
        assert not torch.allclose(on_speech.state_dict()[grouped], on_pink.state_dict()[grouped], rtol=0.01)
    with pytest.raises(ConfigError, match="only used to build a student"):
        AsrcWav2Vec2Encoder(init=str(tiny_dir), calibration=str(corpus["train"]))
    with pytest.raises(ConfigError, match="calibration: .*no wav.scp"):
        AsrcWav2Vec2Encoder(init=str(tiny_dir), layer_init="every_k", config=student,
                            calibration=str(corpus["train"] / "missing"))


def test_a_run_whose_every_update_was_skipped_is_an_error(tmp_path):
    """ESPnet skips updates with a non-finite loss or gradient and carries on: a run in which it
    skipped all of them ended with exit 0 and exported the model it started from (audit)."""
    import pytest
    import torch

    from asrc.errors import AsrcError
    from asrc.espnet.launch import check_updates_made

    check_updates_made(tmp_path)  # no trainer state: nothing to say
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([param])
    torch.save({"model": {}, "optimizers": [opt.state_dict()]}, tmp_path / "checkpoint.pth")
    with pytest.raises(AsrcError, match="no update was made: the trainer skipped every one"):
        check_updates_made(tmp_path)
    param.grad = torch.ones(3)
    opt.step()
    torch.save({"model": {}, "optimizers": [opt.state_dict()]}, tmp_path / "checkpoint.pth")
    check_updates_made(tmp_path)
