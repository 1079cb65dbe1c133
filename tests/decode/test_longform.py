"""Long inputs: windows that tile the frames exactly once, stitched logits equal to the whole
forward where attention is local, splitting at pauses, and the CLI/decode_dir options."""

import glob
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.core.audio import read_audio
from asrc.decode.ctc import GreedyDecoder
from asrc.decode.longform import chunked_forward, plan_windows, recognise, speech_segments
from asrc.decode.options import DecodeOptions
from asrc.models import Wav2Vec2Config, build_model

LETTERS = ["<blank>", "<pad>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
TINY = dict(conv_layers=[[8, 10, 5], [8, 3, 2], [8, 3, 2]], embed_dim=16, ffn_dim=32, num_heads=2, num_layers=1,
            pos_conv_kernel=4, pos_conv_groups=2, vocab_size=len(LETTERS))


def local_model(seed=0):
    """A tiny model whose frames depend only on nearby audio: no attention output (its projection
    is zero), a layer-norm front end and no waveform normalisation (both per frame)."""
    torch.manual_seed(seed)
    cfg = dict(TINY, extractor_mode="layer_norm", normalize_waveform=False, num_layers=2)
    model = build_model(Wav2Vec2Config(**cfg), LETTERS).eval()
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.self_attn.out_proj.weight.zero_()
            layer.self_attn.out_proj.bias.zero_()
        model.ctc_head.weight.mul_(20.0)
    return model


@pytest.mark.parametrize("num_frames", [1, 7, 38, 39, 40, 100, 257])
@pytest.mark.parametrize("chunk,context", [(800, 160), (800, 0), (2000, 400), (440, 200)])
def test_windows_tile_the_frames_once(num_frames, chunk, context):
    stride, rf = 20, 40
    windows = plan_windows(num_frames, stride, rf, chunk, context)
    kept = [f for w in windows for f in range(w.keep_from, w.keep_to)]
    assert kept == list(range(num_frames))
    n = (num_frames - 1) * stride + rf
    for w in windows:
        assert 0 <= w.start < w.end <= n and w.start == w.first_frame * stride
        assert w.end - w.start <= chunk
        assert w.end - w.start == (w.frames - 1) * stride + rf
        assert w.first_frame <= w.keep_from < w.keep_to <= w.first_frame + w.frames
        # context on each side of the core, unless the recording ends there
        assert w.keep_from - w.first_frame == min(context // stride, w.keep_from)
        assert w.first_frame + w.frames - w.keep_to == min(context // stride, num_frames - w.keep_to)


def test_window_without_room_for_a_core_is_an_error():
    with pytest.raises(ValueError, match="no room for a core"):
        plan_windows(100, 20, 40, 400, 200)


@pytest.mark.parametrize("n", [6000, 6013, 16000, 33333])
def test_stitched_logits_equal_the_whole_forward_when_frames_are_local(n):
    model = local_model()
    wav = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.3
    with torch.inference_mode():
        whole, whole_len = model(wav.unsqueeze(0), torch.tensor([n]))
        # 0.1 s windows with 0.02 s (16 frames) of context: many windows, joins everywhere
        stitched, stitched_len = chunked_forward(model, wav, 0.1, 0.02)
    assert stitched_len.tolist() == whole_len.tolist() == [whole.shape[1]]
    assert stitched.shape == whole.shape
    torch.testing.assert_close(stitched, whole, atol=1e-4, rtol=1e-4)  # logits x20: float rounding


def test_stitching_off_by_one_would_show():
    """The check above has teeth: a window grid shifted by one sample changes the logits."""
    model = local_model()
    wav = torch.randn(16000, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.inference_mode():
        whole, _ = model(wav.unsqueeze(0), torch.tensor([16000]))
        shifted, _ = model(wav[1:].unsqueeze(0), torch.tensor([15999]))
    assert (shifted[:, :10] - whole[:, :10]).abs().max() > 1e-3


def test_short_inputs_are_decoded_whole_without_speech_to_trim_to():
    model = local_model()
    wav = torch.randn(8000, generator=torch.Generator().manual_seed(2)) * 0.3
    dec = GreedyDecoder(LETTERS)
    with torch.inference_mode():
        logits, lengths = model(wav.unsqueeze(0), torch.tensor([8000]))
        ref = dec(logits, lengths)[0]
        chunked, _ = chunked_forward(model, wav, 0.5, 0.1)  # 0.5 s > 8000 samples: one piece
        for mode in ("none", "chunk", "vad"):
            assert recognise(model, wav, dec, mode, chunk_seconds=0.5, context_seconds=0.1).ids == ref.ids
    assert torch.equal(chunked, logits)


class Recording(torch.nn.Module):
    """Wraps a model and records the length of every input it is given."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config, self.inputs = net, net.config, []

    def output_lengths(self, lengths):
        return self.net.output_lengths(lengths)

    def forward(self, wav, lengths):
        self.inputs.append(int(lengths[0]))
        return self.net(wav, lengths)


def test_vad_hearing_no_speech_leaves_it_to_the_model():
    """Near-silence: the detector hears nothing, the recording is decoded in windows all the same."""
    quiet = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 12).astype(np.float32) * 1e-4)
    net = Recording(local_model())
    dec = GreedyDecoder(LETTERS)
    with torch.inference_mode():
        hyp = recognise(net, quiet, dec, "vad", chunk_seconds=10.0, context_seconds=1.0)
        ref = dec(*chunked_forward(net.net, quiet, 10.0, 1.0))[0]
    assert len(net.inputs) == 2 and max(net.inputs) <= 16000 * 10  # two windows of the 12 s
    assert hyp.ids == ref.ids


def test_vad_trims_a_short_recording_to_its_speech(an4_root):
    """One AN4 utterance with 3 s of silence before and 2 s after: decoded in one piece, from
    shortly before its speech to shortly after it, its word times on the recording's clock."""
    from asrc.models import load

    path = sorted(glob.glob(os.path.join(an4_root, "wav", "an4test_clstk", "fcaw", "*.sph")))[0]
    speech = read_audio(path)
    wav = torch.from_numpy(np.concatenate([np.zeros(48000, np.float32), speech, np.zeros(32000, np.float32)]))
    teacher = load(os.path.join(os.path.dirname(__file__), "..", "..", "egs", "an4", "teacher")).eval()
    net = Recording(teacher)
    dec = GreedyDecoder(teacher.tokens)
    with torch.inference_mode():
        hyp = recognise(net, wav, dec, "vad", chunk_seconds=10.0)
        whole = dec(*teacher(wav.unsqueeze(0), torch.tensor([wav.shape[0]])))[0]
    assert len(net.inputs) == 1
    assert len(speech) - 16000 < net.inputs[0] <= len(speech) + 16000  # the silence gone, the speech kept
    assert hyp.text and hyp.text.split()[0] == whole.text.split()[0]
    assert min(a for a, _ in hyp.frames) * 0.02 > 2.0  # the first word after the 3 s of silence


def test_vad_hears_a_quiet_recording(an4_root):
    """The same AN4 utterance 50 dB down: the detector (amplified for it, not the model) still
    finds the first word, which without it was lost (the audit's case: 'RUBOUT' gone)."""
    from asrc.decode.longform import detector_level, speech_segments

    path = sorted(glob.glob(os.path.join(an4_root, "wav", "an4test_clstk", "fcaw", "*.sph")))[0]
    speech = torch.from_numpy(read_audio(path))
    quiet = speech * 10 ** (-50 / 20)
    assert torch.equal(detector_level(speech), speech)  # a recording at an ordinary level: as it is
    loud = speech_segments(speech, 10.0)
    found = speech_segments(quiet, 10.0)
    assert found and abs(found[0][0] - loud[0][0]) < 0.2 * 16000
    with torch.no_grad():
        import silero_vad

        unamplified = silero_vad.get_speech_timestamps(quiet.contiguous(), silero_vad.load_silero_vad(),
                                                        sampling_rate=16000)
    assert not unamplified or unamplified[0]["start"] - loud[0][0] > 0.2 * 16000  # what it did before


@pytest.fixture
def two_utterances(an4_root):
    files = sorted(glob.glob(os.path.join(an4_root, "wav", "an4test_clstk", "fcaw", "*.sph")))[:2]
    assert len(files) == 2
    a, b = (read_audio(f) for f in files)
    gap = np.zeros(16000 * 2, dtype=np.float32)
    return np.concatenate([gap, a, gap, b, gap]), len(a), len(b)


def test_vad_splits_at_the_pause(two_utterances):
    wav, na, nb = two_utterances
    segments = speech_segments(torch.from_numpy(wav), max_seconds=10.0)
    gap = 32000
    assert len(segments) >= 2
    middle = (gap + na, 2 * gap + na)  # the pause between the two utterances
    for s, e in segments:
        assert e <= middle[0] + 8000 or s >= middle[1] - 8000, (s, e, middle)  # no segment spans the pause
    assert any(s < middle[0] for s, _ in segments) and any(s >= middle[1] - 8000 for s, _ in segments)
    assert all(e - s > 1600 for s, e in segments)


def test_vad_keeps_the_thread_count(two_utterances):
    """silero_vad's import sets one torch thread for the process; asrc puts the user's back."""
    wav, _, _ = two_utterances
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        import sys

        sys.modules.pop("silero_vad", None)
        sys.modules.pop("silero_vad.model", None)
        speech_segments(torch.from_numpy(wav), max_seconds=10.0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_vad_joins_the_segments_texts(two_utterances, model_dir):
    from asrc.models import load

    wav, _, _ = two_utterances
    net = load(model_dir).eval()
    dec = GreedyDecoder(net.tokens)
    x = torch.from_numpy(wav)
    with torch.inference_mode():
        hyp = recognise(net, x, dec, "vad", chunk_seconds=5.0)
        parts = [dec(*chunked_forward(net, x[s:e], 5.0, 1.0))[0] for s, e in speech_segments(x, 5.0)]
    parts = [p for p in parts if p.text]
    assert hyp.text == " ".join(p.text for p in parts)
    bar = LETTERS.index("|")
    expected, confidences = [], []
    for p in parts:
        expected += ([bar] if expected else []) + p.ids
        confidences += ([1.0] if confidences else []) + p.confidences
    assert hyp.ids == expected and hyp.confidences == confidences


def test_options_validate_the_window():
    DecodeOptions(segment="chunk", chunk_seconds=10, context_seconds=1).validate()
    for bad in (dict(segment="chunk", chunk_seconds=2, context_seconds=1), dict(segment="vad", chunk_seconds=0),
                dict(segment="chunk", context_seconds=-1), dict(segment="windows")):
        with pytest.raises(ValueError):
            DecodeOptions(**bad).validate()
    # the segmentation is part of what a decode directory's output depends on
    fp = {m: DecodeOptions(segment=m).decoder_fingerprint() for m in ("none", "chunk", "vad")}
    assert len({str(v) for v in fp.values()}) == 3
    # and so is the beam search's version: a fixed search redoes earlier beam decodes
    import asrc.decode.options as options

    beam = DecodeOptions(method="beam").decoder_fingerprint()
    assert beam["search_version"] == options.BEAM_SEARCH_VERSION
    assert "search_version" not in DecodeOptions().decoder_fingerprint()  # greedy: unchanged


def test_transcribe_and_decode_cli_on_a_long_file(tmp_path, model_dir, capsys):
    from asrc.bin import decode as decode_cli
    from asrc.bin import transcribe as transcribe_cli

    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate([tone] * 4), 16000)  # 12 s
    texts = {}
    for mode in ("none", "chunk"):
        assert transcribe_cli.main([str(model_dir), str(path), "--segment", mode, "--chunk-seconds", "4"]) == 0
        texts[mode] = capsys.readouterr().out.split("\t", 1)[1].strip()
    assert texts["none"] and texts["chunk"]
    assert transcribe_cli.main([str(model_dir), str(path), "--segment", "chunk", "--chunk-seconds", "2",
                                "--context-seconds", "1"]) == 1
    assert "context_seconds" in capsys.readouterr().err
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"long {path}\n")
    (data / "text").write_text("long A\n")
    (data / "utt2spk").write_text("long long\n")
    out = tmp_path / "dec"
    assert decode_cli.main(["--model", str(model_dir), "--data", str(data), "--out", str(out), "--segment", "chunk",
                            "--chunk-seconds", "4"]) == 0
    assert (out / "text").read_text().split(" ", 1)[1].strip() == texts["chunk"]
