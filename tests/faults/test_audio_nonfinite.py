"""NaN/Inf samples: every reader names the utterance and the file instead of decoding garbage."""

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.bin.data import main as data_main
from asrc.core.audio import read_audio
from asrc.errors import AsrcError
from fault_helpers import save_tiny_model



def tone(n, seed=0):
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)).astype(np.float32)


def write_float_wav(path, n, bad=(), seed=0):
    """A float WAV (the kind that can hold NaN/Inf) with NaN, +Inf, -Inf at the indices ``bad``."""
    x = tone(n, seed)
    for i, k in enumerate(bad):
        x[k] = (np.nan, np.inf, -np.inf)[i % 3]
    sf.write(path, x, 16000, subtype="FLOAT")
    return path


def make_data_dir(root, bad_utt="u2", bad=(10, 20, 30)):
    """A data dir of three float WAVs; ``bad_utt`` holds len(bad) non-finite samples."""
    d, wav = root / "data", root / "wav"
    d.mkdir(parents=True)
    wav.mkdir()
    utts = {"u1": 4000, "u2": 4800, "u3": 5600}
    for k, (utt, n) in enumerate(utts.items()):
        write_float_wav(wav / f"{utt}.wav", n, bad=bad if utt == bad_utt else (), seed=k)
    (d / "wav.scp").write_text("".join(f"{u} {wav / u}.wav\n" for u in utts))
    (d / "text").write_text("".join(f"{u} A B\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in utts))
    (d / "spk2utt").write_text("".join(f"{u} {u}\n" for u in utts))
    (d / "utt2num_samples").write_text("".join(f"{u} {n}\n" for u, n in utts.items()))
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), conv_layers=[[8, 10, 5], [8, 3, 2], [8, 3, 2]])


def test_read_audio_names_utterance_count_and_file(tmp_path):
    path = write_float_wav(tmp_path / "a.wav", 4000, bad=(5, 6, 7))
    with pytest.raises(AsrcError, match=rf"^utterance u1: audio has 3 non-finite samples \(NaN/Inf\) in {path}$"):
        read_audio(str(path), what="utterance u1")
    with pytest.raises(AsrcError, match=r"utterance u1: audio has 3 non-finite samples .* in cat "):
        read_audio(f"cat {path} |", what="utterance u1")  # Kaldi pipes too
    clean = write_float_wav(tmp_path / "clean.wav", 4000)
    np.testing.assert_array_equal(read_audio(str(clean)), sf.read(clean, dtype="float32")[0])


def test_check_audio_decodes_float_files(tmp_path):
    from asrc.core.audio_info import AudioFileError, check_audio

    path = write_float_wav(tmp_path / "a.wav", 4000, bad=(1,))
    with pytest.raises(AudioFileError, match=rf"{path}: audio has 1 non-finite samples"):
        check_audio(path)


def test_validate_reports_the_utterance(tmp_path, capsys):
    d = make_data_dir(tmp_path)
    assert data_main(["validate", str(d)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{d}: wav.scp: u2: {tmp_path}/wav/u2.wav: audio has 3 non-finite samples (NaN/Inf)"]
    assert f"{d}: 1 problem(s)" in err
    assert data_main(["validate", str(d), "--deep"]) == 1
    assert capsys.readouterr().out.splitlines() == out.splitlines()
    clean = make_data_dir(tmp_path / "clean", bad=())
    assert data_main(["validate", str(clean)]) == 0


def test_decode_dir_fails_naming_the_utterance(tmp_path, model_dir):
    from asrc.decode.decode_dir import decode_dir

    d = make_data_dir(tmp_path)
    with pytest.raises(AsrcError, match=rf"utterance u2: audio has 3 non-finite samples .* in {tmp_path}/wav/u2.wav"):
        decode_dir(d, model_dir, tmp_path / "out")
    assert not (tmp_path / "out" / "text").exists()


def test_transcribe_names_the_file_and_decodes_the_others(tmp_path, model_dir):
    from asrc.decode.transcribe import transcribe_files

    bad = write_float_wav(tmp_path / "bad.wav", 4000, bad=(100,))
    good = write_float_wav(tmp_path / "good.wav", 4000)
    (bad_path, bad_result), (good_path, good_result) = transcribe_files(model_dir, [bad, good])
    assert isinstance(bad_result, AsrcError)
    assert str(bad_result) == f"file {bad}: audio has 1 non-finite samples (NaN/Inf) in {bad}"
    assert isinstance(good_result, str)


def test_calibration_reader_names_the_utterance(tmp_path):
    from asrc.core.audio import read_waveforms

    d = make_data_dir(tmp_path, bad_utt="u1")
    with pytest.raises(AsrcError, match=rf"utterance u1 of {d}: audio has 3 non-finite .* in {tmp_path}/wav/u1.wav"):
        read_waveforms(d)
    waves, info = read_waveforms(make_data_dir(tmp_path / "clean", bad=()))
    assert info["utterances"] == 3 and all(torch.isfinite(w).all() for w in waves)


def test_static_pos_calibration_cli_names_the_file(tmp_path, model_dir, capsys):
    from asrc.bin.quantize import main

    d = make_data_dir(tmp_path, bad_utt="u3", bad=(0,))
    assert main([str(model_dir), str(tmp_path / "q"), "--mode", "static-pos", "--calib", str(d)]) == 1
    err = capsys.readouterr().err
    assert f"utterance u3 of {d}: audio has 1 non-finite samples (NaN/Inf) in {tmp_path}/wav/u3.wav" in err
    assert "Traceback" not in err and "histc" not in err
    assert not (tmp_path / "q" / "model.pth").exists()


def test_frontend_init_batches_name_the_utterance(tmp_path):
    from asrc.models.frontend_init import data_dir_batches

    d = make_data_dir(tmp_path, bad_utt="u3")
    with pytest.raises(AsrcError, match=rf"utterance u3: audio has 3 non-finite .* in {tmp_path}/wav/u3.wav"):
        list(data_dir_batches(d, max_seconds=10.0))
