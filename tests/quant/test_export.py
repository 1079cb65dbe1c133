import pytest
import torch
import torch.nn.functional as F

from asrc.errors import AsrcError
from asrc.models import load, save_model_dir
from asrc.models.quantized import save_quantized
from asrc.models.wav2vec2 import plain_ops
from asrc.quant import quantize_model
from asrc.quant.export import FLOAT_TOLERANCE, check_export, export_onnx, export_torchscript, run_export


def padded_batch(structured_set):
    lengths = torch.tensor([12000, 20000, 9000])
    wav = torch.zeros(3, 20000)
    for i, n in enumerate(lengths.tolist()):
        wav[i, :n] = structured_set[3][:n]
    return wav, lengths


@pytest.fixture(scope="module")
def onnx_fp32(tmp_path_factory, trained_tiny):
    return export_onnx(trained_tiny, tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_onnx_matches_pytorch(onnx_fp32, trained_tiny, structured_set):
    wav, lengths = padded_batch(structured_set)
    with torch.inference_mode():
        ref, ref_len = trained_tiny(wav, lengths)
    out, out_len = run_export(onnx_fp32, "onnx", threads=1)(wav, lengths)
    assert out_len.tolist() == ref_len.tolist()
    valid = torch.arange(ref.shape[1])[None] < ref_len[:, None]
    assert (out - ref)[valid].abs().max() < FLOAT_TOLERANCE
    # Dynamic axes: another batch size and length than the trace's.
    one = structured_set[0][None, :7000]
    out1, len1 = run_export(onnx_fp32, "onnx")(one, torch.tensor([7000]))
    ref1, rlen1 = trained_tiny(one, torch.tensor([7000]))
    assert len1.tolist() == rlen1.tolist() and (out1 - ref1).abs().max() < FLOAT_TOLERANCE


def test_onnx_int8_close_to_float(tmp_path, trained_tiny, structured_set):
    path = export_onnx(trained_tiny, tmp_path / "m8.onnx", int8=True)
    report = check_export(trained_tiny, path, "onnx", int8=True)
    assert report["ok"] and report["cosine"] > 0.99
    wav, lengths = padded_batch(structured_set)
    ref, ref_len = trained_tiny(wav, lengths)
    out, _ = run_export(path, "onnx")(wav, lengths)
    valid = torch.arange(ref.shape[1])[None] < ref_len[:, None]
    agree = (out.argmax(-1) == ref.argmax(-1))[valid].float().mean()
    assert agree > 0.95
    assert not list(tmp_path.glob(".*tmp"))  # temporary float graph removed


@pytest.mark.parametrize("mode", [None, "dynamic", "static-conv"])
def test_torchscript_equals_eager(tmp_path, trained_tiny, calibration_set, structured_set, mode):
    model = trained_tiny if mode is None else quantize_model(trained_tiny, mode, calibration_set)[0]
    path = export_torchscript(model, tmp_path / "m.pt")
    scripted = torch.jit.load(str(path))
    wav, lengths = padded_batch(structured_set)
    with torch.inference_mode(), plain_ops():  # the trace is of the modules (not the int8 CNN chain)
        if mode is None:
            ref, ref_len = model(wav, lengths)
        else:
            # Dynamic int8 Linears take their input scale from the tensor at hand: the export runs
            # each utterance alone, as asrc does, so neither the batch nor its padding matters.
            wav[1, lengths[1]:] = 0.5
            alone = [model(wav[i:i + 1, :n], lengths[i:i + 1]) for i, n in enumerate(lengths.tolist())]
            ref = torch.zeros(3, max(x.shape[1] for x, _ in alone), alone[0][0].shape[2])
            for i, (x, _) in enumerate(alone):
                ref[i, :x.shape[1]] = x[0]
            ref_len = torch.cat([n for _, n in alone])
            whole, _ = model(wav, lengths)
            assert not torch.allclose(whole, ref, atol=1e-5)  # what a whole-batch trace gave
        out, out_len = scripted(wav, lengths)
    assert torch.equal(out_len, ref_len)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert check_export(model, path, "torchscript")["ok"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_leaves_model_mode_alone(tmp_path, trained_tiny, structured_set, fmt):
    wav = structured_set[0][None]
    with torch.inference_mode():
        before = trained_tiny(wav)[0]
    export = export_onnx if fmt == "onnx" else export_torchscript
    export(trained_tiny, tmp_path / "m")
    assert not trained_tiny.training  # the exporter once handed it back in training mode (dropout on)
    with torch.inference_mode():
        assert torch.equal(trained_tiny(wav)[0], before)
    trained_tiny.train()
    try:
        export(trained_tiny, tmp_path / "m2")
        assert trained_tiny.training
    finally:
        trained_tiny.eval()


@pytest.mark.parametrize("weights", ["per-channel", "per-tensor"])
def test_onnx_qdq_runs_the_int8_convs_as_int8_and_follows_asrc_int8(tmp_path, trained_tiny, calibration_set,
                                                                     structured_set, weights):
    from asrc.models.ctc import greedy_ids
    from asrc.quant.calibrate import ConvQuantOptions
    from asrc.quant.export import onnx_int8_ops, qdq_min_cosine, run_export

    qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set,
                                  options=ConvQuantOptions(weights=weights, bias_correction=True))
    path = export_onnx(qmodel, tmp_path / "q.onnx")
    ops = onnx_int8_ops(path)
    # Every static int8 conv became one int8 QLinearConv; only the raw-waveform conv stays float.
    assert ops.get("QLinearConv") == len(spec.static_int8_conv) == 7
    assert ops.get("Conv", 0) == 1
    assert ops.get("DynamicQuantizeMatMul", 0) + ops.get("MatMulIntegerToFloat", 0) > 0
    report = check_export(qmodel, path, "onnx")
    assert report["ok"] and report["cosine"] >= qdq_min_cosine(), report["message"]
    run = run_export(path, "onnx")
    with torch.inference_mode():
        for wav in structured_set:
            ref, _ = qmodel(wav[None])
            got, _ = run(wav[None], torch.tensor([wav.numel()]))
            assert F.cosine_similarity(ref.flatten(), got.flatten(), dim=0) >= qdq_min_cosine()
            assert greedy_ids(ref) == greedy_ids(got)


def test_export_cli(tmp_path, trained_tiny, capsys):
    from asrc.bin.export import main

    save_model_dir(trained_tiny, tmp_path / "float")
    qmodel, spec = quantize_model(trained_tiny, "dynamic")
    save_quantized(qmodel, spec, tmp_path / "int8")
    assert main([str(tmp_path / "float"), str(tmp_path / "m.onnx"), "--format", "onnx"]) == 0
    assert main([str(tmp_path / "int8"), str(tmp_path / "q.pt"), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert out.count("check OK") == 2
    assert main([str(tmp_path / "int8"), str(tmp_path / "q.onnx"), "--format", "onnx"]) == 0
    assert "QDQ vs asrc int8" in capsys.readouterr().out
    # The TorchScript file of the int8 directory runs the same as the loaded directory's modules
    # (the trace is of torch's int8 modules, not of asrc's oneDNN fast path).
    scripted = torch.jit.load(str(tmp_path / "q.pt"))
    wav = torch.randn(1, 8000) * 0.1
    with torch.inference_mode(), plain_ops():
        torch.testing.assert_close(scripted(wav, torch.tensor([8000]))[0], load(tmp_path / "int8")(wav)[0])
