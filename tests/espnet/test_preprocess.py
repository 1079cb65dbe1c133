import numpy as np
import pytest

import asrc.espnet  # noqa: F401  (registers --preprocessor asrc)
from asrc.errors import AsrcError
from asrc.espnet.preprocess import AsrcPreprocessor

TOKENS = ["<blank>", "<unk>", "|", "A", "B", "<sos/eos>"]


def make(train=True, **conf):
    return AsrcPreprocessor(train, token_type="char", token_list=TOKENS, space_symbol="|", fs=16000, **conf)


def test_non_finite_audio_names_the_utterance():
    speech = np.ones(1600, np.float32)
    speech[7] = np.nan
    for train in (True, False):
        with pytest.raises(AsrcError, match="utterance spk1-utt3: audio has 1 non-finite"):
            make(train)("spk1-utt3", {"speech": speech.copy(), "text": "A B"})


def test_silence_and_gain_in_training_only():
    np.random.seed(0)
    speech = np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32)
    pre = make(True, silence_range=[0.2, 0.3], gain_db_range=[6.0, 6.0])
    out = pre("u", {"speech": speech.copy(), "text": "A B"})
    n = len(out["speech"])
    assert 8000 + 2 * 3200 <= n <= 8000 + 2 * 4800
    # the padding is a quiet noise floor (not digital zero) and the speech is 6 dB louder
    lead = int(np.argmax(np.abs(out["speech"]) > 0.05))
    assert 3200 <= lead <= 4800
    floor = out["speech"][:lead]
    assert 0 < np.max(np.abs(floor)) < 0.05
    np.testing.assert_allclose(out["speech"][lead:lead + 8000] / speech, 10 ** (6 / 20), rtol=1e-4)
    assert out["text"].tolist() == [3, 2, 4]  # A | B
    # validation/inference: untouched
    val = make(False, silence_range=[0.2, 0.3], gain_db_range=[6.0, 6.0])("u", {"speech": speech.copy(), "text": "A"})
    np.testing.assert_array_equal(val["speech"], speech)


def test_espnet_effects_run_after_noise(tmp_path):
    # ESPnet's own noise adding returns [T, 1]; its speed perturbation then needs [T]
    import soundfile as sf

    sf.write(tmp_path / "n.wav", np.random.default_rng(1).standard_normal(32000).astype(np.float32), 16000)
    (tmp_path / "noise.scp").write_text(f"n {tmp_path / 'n.wav'}\n")
    pre = make(True, noise_scp=str(tmp_path / "noise.scp"), noise_apply_prob=1.0, noise_db_range="10_10",
               data_aug_prob=1.0, data_aug_num=[1, 1], data_aug_effects=[[1.0, "speed_perturb", {"factor": 1.1}]])
    speech = np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3
    out = pre("u", {"speech": speech, "text": "A"})["speech"]
    assert out.ndim == 1 and abs(len(out) - 16000 / 1.1) < 5


def test_bad_ranges_are_errors():
    with pytest.raises(AsrcError, match="silence_range"):
        make(True, silence_range=[0.5, 0.1])
    with pytest.raises(AsrcError, match="gain_db_range"):
        make(True, gain_db_range=[1.0])
