"""ESPnet's own inference on an asrc-train experiment: ``Speech2Text`` and the
``espnet2.bin.asr_inference`` CLI, called as README.md says, print the words asrc-decode prints.

The experiment is a tiny model trained for 60 epochs of 6 updates on the synthetic corpus of
tests/espnet (~15 s). ESPnet searches with CTC prefix scores, asrc-decode takes the best path:
the two agree where every frame is confident and may differ where frames are not (README.md).
So that what is compared is everything but the search (checkpoint, input, tokens, text), the
CTC head of the decoded checkpoint is scaled to make every frame confident.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "espnet"))
from espnet_helpers import teacher_config, write_data_dir, write_yaml  # noqa: E402

from asrc.core.tables import read_table  # noqa: E402
from asrc.data.tokens import letter_tokens  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CHECKPOINT = "valid.loss.ave.pth"  # what asrc-decode on an experiment and --export_model_dir use
HEAD = ("encoder.model.ctc_head", "ctc.ctc_lo")  # one module, under both names in the checkpoint


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import asrc.espnet  # noqa: F401
    from asrc.bin.train import main

    root = tmp_path_factory.mktemp("espnet_inference")
    tokens = root / "tokens.txt"
    tokens.write_text("".join(t + "\n" for t in letter_tokens()))
    corpus = {"train": write_data_dir(root, "train", 24, 1), "valid": write_data_dir(root, "valid", 8, 2),
              "tokens": tokens}
    conf = write_yaml(root / "tiny.yaml", dict(teacher_config(corpus), max_epoch=60))
    assert main(["--config", str(conf), "--exp_dir", str(root / "exp")]) == 0
    exp = root / "exp" / "tiny"
    state = torch.load(exp / CHECKPOINT, weights_only=True)
    for name in HEAD:
        for p in ("weight", "bias"):
            state[f"{name}.{p}"] = state[f"{name}.{p}"] * 30.0
    torch.save(state, exp / CHECKPOINT)
    return {"exp": exp, "data": [corpus["train"], corpus["valid"]]}


def asrc_decode(model, data, out) -> dict:
    from asrc.bin.decode import main

    assert main(["--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    return read_table(out / "text")


def speech2text(exp, checkpoint=CHECKPOINT):
    from espnet2.bin.asr_inference import Speech2Text

    return Speech2Text(asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / checkpoint),
                       ctc_weight=1.0, beam_size=1)


def words(text: str) -> str:
    return " ".join(text.split())


def test_speech2text_prints_what_asrc_decode_prints(experiment, tmp_path):
    exp = experiment["exp"]
    s2t = speech2text(exp)
    # The word boundary | becomes a space in ESPnet's text output.
    ids = [letter_tokens().index(c) for c in "NO|ON"]
    assert s2t.tokenizer.tokens2text(s2t.converter.ids2tokens(ids)) == "NO ON"
    expected, got = {}, {}
    for data in experiment["data"]:
        expected.update(asrc_decode(exp, data, tmp_path / data.name))
        for utt, path in read_table(data / "wav.scp").items():
            text, tokens, _, _ = s2t(sf.read(path, dtype="float32")[0])[0]
            assert "|" not in text and "|" not in tokens
            got[utt] = words(text)
    assert any(" " in t for t in expected.values()), expected  # words were recognised, not only letters
    assert got == expected


def test_asr_inference_cli_writes_the_same_text(experiment, tmp_path):
    """``python -m espnet2.bin.asr_inference`` itself cannot know asrc's classes; README.md's
    one-liner imports asrc.espnet first, then runs ESPnet's own main()."""
    exp, data = experiment["exp"], experiment["data"][0]
    expected = asrc_decode(exp, data, tmp_path / "decode")
    out = tmp_path / "espnet"
    cli = "import sys, asrc.espnet; from espnet2.bin.asr_inference import main; main(sys.argv[1:])"
    r = subprocess.run([sys.executable, "-c", cli, "--asr_train_config", str(exp / "config.yaml"),
                        "--asr_model_file", str(exp / CHECKPOINT), "--ctc_weight", "1.0", "--beam_size", "1",
                        "--token_type", "char", "--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
                        "--output_dir", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {utt: words(text) for utt, text in read_table(out / "1best_recog" / "text").items()}
    assert got == expected


def test_the_last_letter_is_a_letter_for_espnet(experiment, tmp_path):
    """ESPnet ends hypotheses with <sos/eos>, or else the last token: Z in fairseq's letter list,
    which its search could then never output. asrc's models name </s> instead."""
    exp = experiment["exp"]
    state = torch.load(exp / CHECKPOINT, weights_only=True)
    z = letter_tokens().index("Z")
    for name in HEAD:  # "Z" on every frame
        state[f"{name}.weight"] = torch.zeros_like(state[f"{name}.weight"])
        state[f"{name}.bias"] = torch.zeros_like(state[f"{name}.bias"])
        state[f"{name}.bias"][z] = 10.0
    torch.save(state, exp / "all_z.pth")
    s2t = speech2text(exp, "all_z.pth")
    assert s2t.asr_model.token_list[s2t.asr_model.eos] == "</s>"
    wav_path = next(iter(read_table(experiment["data"][0] / "wav.scp").values()))
    assert s2t(sf.read(wav_path, dtype="float32")[0])[0][0] == "Z"
