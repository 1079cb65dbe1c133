"""asrc-transcribe: resampling, mono mixing, unreadable files."""

import soundfile as sf
import torch
import torchaudio.functional as AF

from asrc.bin.transcribe import main as transcribe_main
from asrc.decode.ctc import GreedyDecoder
from asrc.decode.transcribe import transcribe_files
from asrc.errors import AsrcError
from asrc.models import load


def reference_text(model_dir, wav_16k):
    model = load(model_dir)
    x = torch.as_tensor(wav_16k, dtype=torch.float32).unsqueeze(0)
    with torch.inference_mode():
        logits, lengths = model(x, torch.tensor([x.shape[1]]))
    return GreedyDecoder(model.tokens)(logits, lengths)[0].text


def test_8khz_input_is_resampled(model_dir, make_wav, tmp_path):
    path = make_wav(tmp_path / "narrow.wav", 4000, sample_rate=8000, seed=3)
    wav, rate = sf.read(path, dtype="float32")
    assert rate == 8000
    expected = reference_text(model_dir, AF.resample(torch.from_numpy(wav), 8000, 16000))
    [(name, text)] = transcribe_files(model_dir, [str(path)])
    assert name == str(path) and text == expected


def test_stereo_is_mixed_to_mono(model_dir, make_wav, tmp_path):
    path = make_wav(tmp_path / "stereo.flac", 6000, channels=2, seed=4)
    wav, _ = sf.read(path, dtype="float32")
    [(_, text)] = transcribe_files(model_dir, [str(path)])
    assert text == reference_text(model_dir, wav.mean(axis=1))


def test_bad_files_are_reported_and_the_rest_transcribed(model_dir, make_wav, tmp_path, capsys):
    good = make_wav(tmp_path / "good.wav", 4000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"\x00\x01not audio" * 50)
    results = dict(transcribe_files(model_dir, [str(junk), str(good), str(tmp_path / "gone.flac")]))
    assert isinstance(results[str(junk)], AsrcError) and "junk.wav" in str(results[str(junk)])
    assert isinstance(results[str(tmp_path / "gone.flac")], FileNotFoundError)
    assert isinstance(results[str(good)], str)

    assert transcribe_main([str(model_dir), str(good), str(junk)]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{good}\t{results[str(good)]}\n"
    assert "junk.wav" in captured.err
    assert transcribe_main([str(model_dir), str(good)]) == 0
