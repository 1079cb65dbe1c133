"""asrc-train and encoder_conf: a misspelt or mistyped key is one line naming it, not a TypeError;
the traceback goes to exp/<tag>/train.log."""

import numpy as np
import pytest
import soundfile as sf
import yaml

LETTERS = ["<blank>", "<pad>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
TINY = dict(conv_layers=[[8, 10, 5], [8, 3, 2]], embed_dim=16, ffn_dim=32, num_heads=2, num_layers=1,
            pos_conv_kernel=4, pos_conv_groups=2, vocab_size=len(LETTERS))

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def encoder_class():
    from asrc.espnet.encoder import AsrcWav2Vec2Encoder

    return AsrcWav2Vec2Encoder


@pytest.mark.parametrize("conf,message", [
    ({"freeze_feature_update": 10}, r"unknown encoder_conf keys \['freeze_feature_update'\] \(known: \['config', "),
    ({"freeze_feature_updates": "10"}, r"encoder_conf\.freeze_feature_updates='10' must be an integer >= 0"),
    ({"mask_after_updates": 1.5}, r"encoder_conf\.mask_after_updates=1\.5 must be an integer >= 0"),
    ({"layer_init": 3}, r"encoder_conf\.layer_init=3 must be every_k, first_k, last_k or a list of teacher layers"),
    ({"calibration": ["data/train"]}, r"encoder_conf\.calibration=\['data/train'\] must be a data directory"),
])
def test_encoder_conf_mistakes_are_config_errors(encoder_class, conf, message):
    from asrc.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{message}"):
        encoder_class(config=dict(TINY), **conf)


def test_encoder_conf_config_must_be_a_mapping(encoder_class):
    from asrc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"encoder_conf\.config=\[16\] must be a mapping of Wav2Vec2Config keys"):
        encoder_class(config=[16])


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("wav.scp", "text", "utt2spk"):
        (d / name).write_text("")
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000, subtype="PCM_16")
        for name, value in (("wav.scp", path), ("text", "A B"), ("utt2spk", "s")):
            with open(d / name, "a") as f:
                f.write(f"u{i} {value}\n")
    (tmp_path / "tokens.txt").write_text("".join(t + "\n" for t in LETTERS))
    return d


def test_train_with_a_misspelt_encoder_conf_key(corpus, tmp_path, capsys):
    from asrc.bin.train import main

    conf = dict(num_workers=0, batch_type="sorted", batch_size=2, max_epoch=1, train_data_dir=str(corpus),
                valid_data_dir=str(corpus), token_list=str(tmp_path / "tokens.txt"), encoder="asrc_wav2vec2",
                encoder_conf={"config": dict(TINY), "freeze_feature_update": 10}, model="asrc_ctc")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(conf))
    assert main(["--config", str(tmp_path / "bad.yaml"), "--exp_dir", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("asrc-train: error: ")]
    assert errors == [err.strip().splitlines()[-1]]
    assert errors[0].startswith("asrc-train: error: unknown encoder_conf keys ['freeze_feature_update']")
    exp = tmp_path / "exp" / "bad"
    log = (exp / "train.log").read_text()
    assert "Traceback" in log and log.strip().endswith("unknown encoder_conf keys ['freeze_feature_update'] "
                                                       "(known: ['config', 'init', 'layer_init', "
                                                       "'freeze_feature_updates', 'mask_after_updates', "
                                                       "'calibration', 'conv_init'])")
    assert not (exp / "checkpoint.pth").exists()
