"""The CUDA code paths: training with AMP, distillation, the student's front-end fit, decoding.

They run where ``torch.cuda.is_available()`` and are skipped elsewhere. On CUDA the model
takes the plain PyTorch path (the inference fast path is CPU-only), ESPnet's trainer moves the
model and, through ``AsrcDistillModel._apply``, the teacher kept out of the module tree, and
``--use_amp`` runs the forward under autocast (bfloat16 where the GPU supports it) with a
gradient scaler. Results are compared with the CPU where they must agree; TF32 is switched off
for those comparisons so that float32 means float32.
"""

import re
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "espnet"))
from espnet_helpers import TINY_ENCODER, teacher_config, write_data_dir, write_yaml  # noqa: E402

from asrc.core.tables import read_table  # noqa: E402
from asrc.data.tokens import letter_tokens  # noqa: E402
from asrc.models import Wav2Vec2Config, build_model, load, save_model_dir  # noqa: E402

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture
def strict_fp32():
    """float32 matmuls and convolutions without TF32 (restored afterwards)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    tokens = root / "tokens.txt"
    tokens.write_text("".join(t + "\n" for t in letter_tokens()))
    return {"train": write_data_dir(root, "train", 24, 1), "valid": write_data_dir(root, "valid", 8, 2),
            "tokens": tokens}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A random 4-layer model directory with the tiny CNN of tests/espnet (10 ms frames)."""
    torch.manual_seed(0)
    config = Wav2Vec2Config.from_dict(dict(TINY_ENCODER, num_layers=4, vocab_size=len(letter_tokens())))
    out = tmp_path_factory.mktemp("teacher") / "model"
    save_model_dir(build_model(config, letter_tokens()).eval(), out)
    return out


def train(conf_path: Path, exp_dir: Path) -> Path:
    import asrc.espnet  # noqa: F401
    from asrc.bin.train import main

    assert main(["--config", str(conf_path), "--exp_dir", str(exp_dir)]) == 0
    return exp_dir / conf_path.stem


def reporter_stats(exp: Path) -> dict:
    return torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["stats"]


def loss_scales(exp: Path) -> list:
    """The gradient scaler's scale in every training log line (ESPnet logs 1.0 without a scaler)."""
    return [float(x) for x in re.findall(r"loss_scale=([-+.e0-9]+)", (exp / "train.log").read_text())]


def test_training_step_with_amp(corpus, tmp_path):
    conf = write_yaml(tmp_path / "amp.yaml", dict(teacher_config(corpus), ngpu=1, use_amp=True, log_interval=1))
    exp = train(conf, tmp_path / "exp")
    scales = loss_scales(exp)
    assert scales and all(s > 1.0 for s in scales)  # a GradScaler: AMP was on
    stats = reporter_stats(exp)
    for epoch in (1, 2):
        assert torch.isfinite(torch.tensor([stats[epoch]["train"]["loss"], stats[epoch]["valid"]["loss"]])).all()
    assert stats[2]["train"]["loss"] < stats[1]["train"]["loss"]
    # The checkpoint is float32 on any device: it loads and exports on the CPU.
    from asrc.models.espnet_dir import export_model_dir

    model = load(export_model_dir(exp, tmp_path / "model"))
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())


def test_distillation_step_on_cuda(corpus, teacher_dir, tmp_path):
    """The teacher (not a submodule) follows the student to the GPU; every term is finite, with AMP."""
    weights = {"kd_loss": 0.5, "student_loss": 0.5, "hidden_loss": 0.1, "cos_embed_loss": 0.1, "features_pen": 0.01}
    conf = dict(teacher_config(corpus), ngpu=1, use_amp=True, max_epoch=1, model="asrc_distill",
                encoder_conf={"init": str(teacher_dir), "layer_init": "every_k",
                              "config": {"num_layers": 2, "conv_groups": 2}},
                model_conf={"teacher": str(teacher_dir), "temperature": 2.0, "loss_weights": weights})
    exp = train(write_yaml(tmp_path / "distill.yaml", conf), tmp_path / "exp")
    stats = reporter_stats(exp)[1]
    for phase, keys in (("train", weights), ("valid", [*weights, "cer", "cer_teacher"])):
        values = torch.tensor([float(stats[phase][k]) for k in keys])
        assert torch.isfinite(values).all(), (phase, stats[phase])
    assert all(s > 1.0 for s in loss_scales(exp))


def test_student_front_end_fit_on_cuda_matches_the_cpu(teacher_dir, strict_fp32):
    """build_student on a GPU teacher fits the grouped CNN kernels the CPU fits (the CPU takes
    the inference fast path, the GPU does not: the targets must be the same conv outputs)."""
    from asrc.models.student import build_student, default_calibration

    teacher = load(teacher_dir).eval()
    config = teacher.config.replace(num_layers=2, conv_groups=2)
    wav = default_calibration(batch=2, seconds=1.0, seed=3)
    kernels = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(1)
        student, _ = build_student(teacher.to(device), config, calibration=wav.to(device))
        assert next(student.parameters()).device.type == device
        kernels[device] = [block.conv.weight.detach().cpu() for block in student.feature_extractor.conv_layers]
    teacher.cpu()
    for i, (cpu, gpu) in enumerate(zip(kernels["cpu"], kernels["cuda"])):
        assert torch.allclose(gpu, cpu, rtol=1e-3, atol=1e-4), (i, (gpu - cpu).abs().max())


def test_decoding_on_cuda_matches_the_cpu(corpus, teacher_dir, strict_fp32):
    """Padded batches on the GPU (the plain attention path with its padding mask) give the CPU's
    logits, and the greedy decoder reads CUDA logits as it reads the same logits on the CPU."""
    from asrc.decode.ctc import GreedyDecoder

    model = load(teacher_dir).eval()
    wavs = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in read_table(corpus["valid"] / "wav.scp").values()]
    lengths = torch.tensor([len(w) for w in wavs])
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    with torch.inference_mode():
        cpu_logits, cpu_lengths = model(batch, lengths)
        gpu_logits, gpu_lengths = model.cuda()(batch.cuda(), lengths.cuda())
    assert torch.equal(gpu_lengths.cpu(), cpu_lengths)
    for b, n in enumerate(cpu_lengths.tolist()):  # padded frames are not compared
        assert torch.allclose(gpu_logits[b, :n].cpu(), cpu_logits[b, :n], atol=1e-3), b
    decoder = GreedyDecoder(model.tokens)
    on_gpu, on_cpu = decoder(gpu_logits, gpu_lengths), decoder(gpu_logits.cpu(), gpu_lengths.cpu())
    assert [(h.ids, h.text) for h in on_gpu] == [(h.ids, h.text) for h in on_cpu]
    assert [h.score for h in on_gpu] == pytest.approx([h.score for h in on_cpu], rel=1e-5)


def test_espnet_speech2text_on_cuda(corpus, tmp_path, strict_fp32):
    import asrc.espnet  # noqa: F401
    from espnet2.bin.asr_inference import Speech2Text

    exp = train(write_yaml(tmp_path / "tiny.yaml", dict(teacher_config(corpus), max_epoch=1)), tmp_path / "exp")
    wav = sf.read(next(iter(read_table(corpus["valid"] / "wav.scp").values())), dtype="float32")[0]
    texts = {}
    for device in ("cpu", "cuda"):
        s2t = Speech2Text(asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / "valid.loss.ave.pth"),
                          ctc_weight=1.0, beam_size=1, device=device)
        x = torch.from_numpy(wav)[None].to(device)
        enc, _ = s2t.asr_model.encode(x, torch.tensor([x.shape[1]], device=device))
        texts[device] = (s2t.asr_model.ctc.log_softmax(enc).cpu(), s2t(wav)[0][0])
    assert torch.allclose(texts["cuda"][0], texts["cpu"][0], atol=1e-3)
    assert texts["cuda"][1] == texts["cpu"][1]


def test_chunked_forward_on_cuda_matches_cpu(strict_fp32):
    """Long inputs in windows (asrc.decode.longform) on the GPU: the same stitched logits."""
    from asrc.decode.ctc import GreedyDecoder
    from asrc.decode.longform import chunked_forward, recognise

    torch.manual_seed(0)
    tokens = letter_tokens()
    model = build_model(Wav2Vec2Config(**TINY_ENCODER, vocab_size=len(tokens)), tokens).eval()
    wav = torch.randn(16000 * 3) * 0.3
    with torch.inference_mode():
        cpu, cpu_len = chunked_forward(model, wav, 1.0, 0.2)
        model.cuda()
        gpu, gpu_len = chunked_forward(model, wav.cuda(), 1.0, 0.2)
        hyp = recognise(model, wav.cuda(), GreedyDecoder(tokens), "chunk", 1.0, 0.2)
    assert gpu.is_cuda and gpu_len.tolist() == cpu_len.tolist()
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    assert hyp.ids == GreedyDecoder(tokens)(cpu, cpu_len)[0].ids
