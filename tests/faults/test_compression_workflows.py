"""From an audit of the pruning / QAT / export workflows: options a mode would have ignored,
outputs that overwrote their own input, a stale quantization.yaml, prune + qat in one run,
asrc-info on an experiment directory."""

import shutil

import pytest
import torch
import yaml

from fault_helpers import save_tiny_model
from test_cli_option_ranges import error_line


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), normalize_waveform=True)


@pytest.mark.parametrize("args,message", [
    (["--mode", "qat", "--activation-bits", "7"], "--mode qat converts a QAT experiment"),
    (["--mode", "qat", "--bias-correction"], "--bias-correction would be ignored"),
    (["--mode", "dynamic", "--calib", "data"], "--mode dynamic quantizes the Linear layers' inputs per call"),
    (["--mode", "dynamic", "--activation-bits", "7"], "--activation-bits applies to the static modes"),
    (["--mode", "static-conv", "--calib", "data", "--conv-calibration", "minmax", "--percentile", "99"],
     "--percentile applies to --conv-calibration percentile, not minmax"),
])
def test_quantize_flags_a_mode_would_ignore_are_refused(model_dir, tmp_path, capsys, args, message):
    """--mode qat --activation-bits 7 wrote 8-bit codes, exit 0 (and so on for each case)."""
    from asrc.bin.quantize import main

    out = tmp_path / "q"
    assert main([str(model_dir), str(out), *args]) == 1
    assert message in error_line(capsys.readouterr().err, "asrc-quantize")
    assert not out.exists()


def test_quantize_into_its_own_source_is_refused(model_dir, tmp_path, capsys):
    """'exists and is not empty (use --overwrite)', then --overwrite replaced the float model."""
    from asrc.bin.quantize import main

    src = shutil.copytree(model_dir, tmp_path / "m")
    before = (src / "model.pth").read_bytes()
    assert main([str(src), str(tmp_path / "." / "m"), "--overwrite"]) == 1
    assert "is SRC" in error_line(capsys.readouterr().err, "asrc-quantize")
    assert (src / "model.pth").read_bytes() == before and not (src / "quantization.yaml").exists()


def test_a_float_model_saved_over_an_int8_one_loads(model_dir, tmp_path):
    """save_model_dir left quantization.yaml behind: the folder no longer loaded."""
    from asrc.models import load, save_model_dir
    from asrc.quant.quantize_dir import quantize_dir

    quantize_dir(model_dir, tmp_path / "d", "dynamic")
    model = load(model_dir)
    save_model_dir(model, tmp_path / "d")
    wav = torch.randn(1, 8000)
    with torch.inference_mode():
        assert torch.equal(load(tmp_path / "d")(wav)[0], model(wav)[0])


def test_prune_and_qat_in_one_run_are_refused(tmp_path):
    """Both sections trained under gates, then exported the *unpruned* student in int8, exit 0."""
    from asrc.errors import ConfigError
    from asrc.espnet.task import AsrcASRTask, complete_args

    args = AsrcASRTask.parse_args(["--model", "asrc_distill", "--prune", "target_sparsity=0.5",
                                   "--qat", "start_updates=0", "--output_dir", str(tmp_path / "exp")])
    with pytest.raises(ConfigError, match="prune: and qat: in one run are not supported"):
        complete_args(args)


def test_export_into_the_model_the_run_starts_from_is_refused(model_dir, tmp_path):
    from asrc.errors import ConfigError
    from asrc.espnet.launch import _check_export_dir
    from asrc.espnet.task import AsrcASRTask

    init = shutil.copytree(model_dir, tmp_path / "init")
    args = AsrcASRTask.parse_args(["--encoder_conf", f"init={init}", "--output_dir", str(tmp_path / "exp")])
    with pytest.raises(ConfigError, match="is encoder_conf.init"):
        _check_export_dir(tmp_path / "x" / ".." / "init", args)
    _check_export_dir(tmp_path / "other", args)  # another folder: fine


def test_asrc_info_reads_an_experiment_as_load_does(model_dir, tmp_path, capsys):
    """asrc-info on exp/<tag> listed ~150 ESPnet options as unknown Wav2Vec2Config keys."""
    from asrc.bin.info import main
    from asrc.models import load

    exp = tmp_path / "exp"
    exp.mkdir()
    model = load(model_dir)
    config = {"encoder": "asrc_wav2vec2", "encoder_conf": {"config": model.config.to_dict()},
              "token_list": list(model.tokens), "model": "asrc_ctc", "optim": "adam", "max_epoch": 3}
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save({f"encoder.model.{k}": v for k, v in model.state_dict().items()}, exp / "valid.loss.ave.pth")
    assert main([str(exp)]) == 0, capsys.readouterr().err
    assert "unknown" not in capsys.readouterr().err


def test_short_check_utterances_are_named_before_anything_is_written(model_dir, tmp_path, capsys):
    """--check with an utterance shorter than the receptive field failed after OUT was written,
    naming neither --check nor the utterance."""
    import numpy as np
    import soundfile as sf

    from asrc.bin.quantize import main
    from asrc.models import load_config

    d = tmp_path / "check"
    d.mkdir()
    for utt, n in (("long1", 16000), ("tiny2", load_config(model_dir).receptive_field - 1)):
        sf.write(d / f"{utt}.wav", (0.1 * np.random.default_rng(0).standard_normal(n)).astype("float32"), 16000)
    (d / "wav.scp").write_text(f"long1 {d}/long1.wav\ntiny2 {d}/tiny2.wav\n")
    out = tmp_path / "q"
    assert main([str(model_dir), str(out), "--check", str(d)]) == 1
    line = error_line(capsys.readouterr().err, "asrc-quantize")
    assert "--check" in line and "'tiny2'" in line and "receptive field" in line
    assert not out.exists()


def test_a_macs_clip_shorter_than_the_receptive_field_names_prune_cost_seconds():
    from asrc.errors import ConfigError
    from asrc.models import Wav2Vec2Config
    from asrc.prune.objective import PruningObjective
    from asrc.prune.spec import PruneSpec

    with pytest.raises(ConfigError, match=r"prune.cost_seconds=0.001 is 16 samples, shorter than the student's "
                                          r"receptive field \(400\)"):
        PruningObjective(Wav2Vec2Config(), PruneSpec(cost="macs", cost_seconds=0.001))


def test_quantizing_an_experiment_directory_says_what_to_quantize(model_dir, tmp_path, capsys):
    from asrc.bin.quantize import main

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump({"encoder": "asrc_wav2vec2", "model": "asrc_distill",
                                                     "prune": {"target_sparsity": 0.5}}))
    (tmp_path / "wav.scp").write_text("")
    assert main([str(exp), str(tmp_path / "q"), "--mode", "static-pos", "--calib", str(tmp_path)]) == 1
    line = error_line(capsys.readouterr().err, "asrc-quantize")
    assert "an asrc-train experiment" in line and "--export_model_dir" in line and "--mode qat" in line


def test_a_structure_named_twice_is_refused():
    """prune.structures: [conv, conv, heads] was accepted without comment."""
    from asrc.errors import ConfigError
    from asrc.prune.spec import PruneSpec

    with pytest.raises(ConfigError, match=r"prune: structures \['conv'\] given more than once"):
        PruneSpec.from_dict({"structures": ["conv", "conv", "heads"]})
