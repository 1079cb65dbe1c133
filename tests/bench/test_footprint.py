import json

import pytest

from asrc.bench import footprint
from asrc.models import Wav2Vec2Config


def run_bench(argv):
    import argparse

    parser = argparse.ArgumentParser()
    footprint.add_arguments(parser)
    return footprint.run(parser.parse_args(argv))


def test_base_teacher_macs_order_of_magnitude():
    # wav2vec2-base on 10 s: ~24 G in the CNN + ~43 G in 12 layers + 2.4 G positional conv.
    assert 65e9 < footprint.clip_macs(Wav2Vec2Config(), 160000) < 75e9


def test_parse_wer(tmp_path):
    assert footprint.parse_wer("teacher=5.1, student-int8=7") == {"teacher": 5.1, "student-int8": 7.0}
    path = tmp_path / "wer.json"
    path.write_text(json.dumps({"teacher": 4.5}))
    assert footprint.parse_wer(str(path)) == {"teacher": 4.5}
    with pytest.raises(ValueError, match="not name=WER"):
        footprint.parse_wer("teacher")
    with pytest.raises(ValueError, match="not a number"):
        footprint.parse_wer("teacher=x")
    # asrc-results names rows student_int8; footprint rows are student-int8
    assert footprint.wer_for({"student_int8": 3.0}, "student-int8") == 3.0
    assert footprint.wer_for({"student": 3.0}, "teacher") is None


def test_parse_cer_as_wer(tmp_path):
    assert footprint.parse_wer("teacher=5.1,kd=7", "CER") == {"teacher": 5.1, "kd": 7.0}
    path = tmp_path / "cer.json"
    path.write_text(json.dumps({"teacher": 4.5, "pruned_0.7": 6}))
    assert footprint.parse_wer(str(path), "CER") == {"teacher": 4.5, "pruned_0.7": 6.0}
    with pytest.raises(ValueError, match="--cer: 'teacher' is not name=CER"):
        footprint.parse_wer("teacher", "CER")
    with pytest.raises(ValueError, match="--cer: 'kd=x': CER 'x' is not a number"):
        footprint.parse_wer("kd=x", "CER")
    path.write_text(json.dumps({"teacher": None}))
    with pytest.raises(ValueError, match="CER of 'teacher' is None, not a number"):
        footprint.parse_wer(str(path), "CER")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        footprint.parse_wer(str(path), "CER")


def test_student_row_names(tmp_path):
    (tmp_path / "exp" / "student" / "model").mkdir(parents=True)
    assert footprint.student_name_and_dir(str(tmp_path / "exp/student/model")) == \
        ("student", str(tmp_path / "exp/student/model"))
    assert footprint.student_name_and_dir("kd=exp/x") == ("kd", "exp/x")
    assert footprint.student_name_and_dir(str(tmp_path / "exp")) == ("exp", str(tmp_path / "exp"))


def test_student_presets_shrink_teacher():
    t = Wav2Vec2Config()
    s = footprint.student_config(t, footprint.STUDENT_PRESETS["student-4L-g2-d384-c256"])
    assert (s.num_layers, s.embed_dim, s.ffn_dim, s.num_heads, s.conv_dim, s.conv_groups) == (4, 384, 1536, 6, 256, 2)
    assert [c[1:] for c in s.conv_layers] == [c[1:] for c in t.conv_layers]  # same strides and kernels


def test_footprint_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "fp"
    rc = run_bench(["--tiny", "--runs", "1", "--warmup", "0", "--threads", "1",
                    "--student-preset", "student-4L-g2-d384-c256", "--int8-mode", "static-pos",
                    "--int8-mode", "static-conv",
                    "--json", str(out) + ".json", "--markdown", str(out) + ".md", "--plot", str(out) + ".png",
                    "--wer", "teacher=10.0,student-4L-g2-d384-c256-int8=12.5", "--workdir", str(tmp_path / "work")])
    assert rc == 0
    data = json.loads((tmp_path / "fp.json").read_text())
    names = [r["name"] for r in data["rows"]]
    s = "student-4L-g2-d384-c256"
    assert names == ["teacher", "hf-peer", "hf-peer-onnx-int8", s, f"{s}-int8", f"{s}-int8-qdq", f"{s}-int8-static-conv",
                     f"{s}-int8-static-conv-qdq", f"{s}-onnx", f"{s}-onnx-int8"]
    rows = {r["name"]: r for r in data["rows"]}
    for r in data["rows"]:
        assert r["params"] > 0 and r["mb"] > 0 and r["macs"] > 0 and r["latency"] > 0
        assert r["rtf"] == pytest.approx(r["latency"] / 1.0)
        assert r["speedup"] == pytest.approx(rows["teacher"]["latency"] / r["latency"])
        assert r["size_ratio"] == pytest.approx(rows["teacher"]["mb"] / r["mb"])
    assert rows["teacher"]["wer"] == 10.0 and rows[f"{s}-int8"]["wer"] == 12.5 and rows[s]["wer"] is None
    # The peer computes what the teacher computes (same weights through the importer).
    assert rows["hf-peer"]["note"].startswith("same weights as teacher")
    assert float(rows["hf-peer"]["note"].rsplit(" ", 1)[1]) < 1e-3
    # Saved files were really measured: int8 smaller than the float student on disk.
    # (at tiny scale per-channel scales eat the CNN's int8 saving, so no order between the two int8 rows)
    assert rows[f"{s}-int8-static-conv"]["mb"] < rows[s]["mb"] and rows[f"{s}-int8"]["mb"] < rows[s]["mb"]
    assert rows[f"{s}-int8"]["precision"] == "int8 (static-pos)"
    assert rows[f"{s}-int8-static-conv-qdq"]["precision"] == "int8 (QDQ of static-conv)"
    assert rows["hf-peer-onnx-int8"]["mb"] < rows["hf-peer"]["mb"]
    assert rows[f"{s}-int8"]["macs"] == rows[s]["macs"] < rows["teacher"]["macs"]
    assert data["environment"]["threads"] == 1 and data["environment"]["input_seconds"] == 1.0
    md = (tmp_path / "fp.md").read_text()
    assert "| model | runtime | precision | params (M) | MB | GMACs | latency (s) | best (s) | RTF | speed-up | smaller | WER % |" in md
    assert md.count("\n| ") == 1 + len(names)
    assert (tmp_path / "fp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "work" / f"{s}-int8" / "quantization.yaml").is_file()
    assert "| teacher |" in capsys.readouterr().out


def test_footprint_rows_for_ptq_options_and_int8_dirs(tmp_path):
    """--conv-calibration/--bias-correction/--activation-bits label the int8 rows (and make them);
    --int8-per-frame adds a per-frame twin of the static-conv row; --int8-student times a ready
    int8 directory (here a QAT conversion) with its QDQ export; --agreement covers the new rows."""
    import copy

    import torch

    from asrc.models import build_model, save_model_dir
    from asrc.models.quantized import save_quantized
    from asrc.quant.qat import QATConfig, convert_qat, prepare_qat, set_fake_quant

    torch.manual_seed(0)
    teacher = build_model(footprint.TINY_TEACHER)
    save_model_dir(teacher, tmp_path / "t")
    qat = prepare_qat(copy.deepcopy(teacher), QATConfig())
    set_fake_quant(qat, True)
    qat.train()
    qat(0.1 * torch.randn(2, 8000))
    qmodel, spec = convert_qat(qat.eval())
    save_quantized(qmodel, spec, tmp_path / "qat")
    data = tmp_path / "data"
    data.mkdir()
    import soundfile as sf

    sf.write(data / "a.wav", (0.1 * torch.randn(8000)).numpy(), 16000)
    (data / "wav.scp").write_text(f"a {data / 'a.wav'}\n")
    rc = run_bench(["--teacher", str(tmp_path / "t"), "--student", f"s={tmp_path / 't'}", "--seconds", "0.5",
                    "--runs", "1", "--warmup", "0", "--threads", "1", "--no-peer", "--int8-mode", "static-conv",
                    "--conv-calibration", "percentile", "--bias-correction", "--activation-bits", "7", "--int8-student",
                    f"s-qat={tmp_path / 'qat'}", "--agreement", str(data), "--json", str(tmp_path / "o.json"),
                    "--workdir", str(tmp_path / "w"), "--int8-per-frame"])
    assert rc == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "o.json").read_text())["rows"]}
    assert rows["s-int8"]["precision"] == "int8 (static-conv, percentile + bias corr., 7-bit)"
    assert "activation_reduce_range: true" in (tmp_path / "w" / "s-int8" / "quantization.yaml").read_text()
    assert rows["s-qat"]["precision"] == "int8 (qat)" and rows["s-qat-qdq"]["precision"] == "int8 (QDQ of qat)"
    assert rows["s-int8-qdq"]["agreement"]["logit_cosine"] > 0.9
    # --int8-per-frame: a per-frame twin of the static-conv row, without a QDQ export (it has none)
    assert rows["s-int8-frame"]["precision"] == "int8 (static-conv, percentile + bias corr., 7-bit, per-frame CNN)"
    assert "per_frame_int8_conv:\n- feature_extractor" in (tmp_path / "w" / "s-int8-frame" / "quantization.yaml").read_text()
    assert "s-int8-frame-qdq" not in rows
    assert rows["s-int8-frame"]["agreement"]["logit_cosine"] > 0.9
    assert rows["s-qat"]["agreement"] is None  # no float row it was made from in this run


def test_footprint_uses_given_model_dirs(tmp_path):
    import torch

    from asrc.models import build_model, save_model_dir

    torch.manual_seed(0)
    save_model_dir(build_model(footprint.TINY_TEACHER), tmp_path / "t")
    save_model_dir(build_model(footprint.TINY_TEACHER.replace(num_layers=1, conv_groups=2)), tmp_path / "mystudent")
    rc = run_bench(["--teacher", str(tmp_path / "t"), "--student", f"kd={tmp_path / 'mystudent'}", "--seconds", "0.5",
                    "--runs", "1", "--warmup", "0", "--threads", "1", "--no-peer", "--no-onnx", "--int8-mode", "dynamic",
                    "--json", str(tmp_path / "o.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["teacher", "kd", "kd-int8"]
    assert rows[2]["precision"] == "int8 (dynamic)"
    assert run_bench(["--student", str(tmp_path / "nope"), "--tiny", "--runs", "1"]) == 1


def test_footprint_cer_float_rows_only(tmp_path, capsys):
    """--cer beside --wer: a CER column and CER in the JSON rows; --no-int8 with --no-onnx
    --no-peer times the float models alone; a bad --cer is a one-line error."""
    import torch

    from asrc.models import build_model, save_model_dir

    torch.manual_seed(0)
    save_model_dir(build_model(footprint.TINY_TEACHER), tmp_path / "t")
    save_model_dir(build_model(footprint.TINY_TEACHER.replace(num_layers=1)), tmp_path / "s" / "model")
    (tmp_path / "cer.json").write_text(json.dumps({"teacher": 12.5, "student_kd": 20.25}))
    out = tmp_path / "o"
    common = ["--teacher", str(tmp_path / "t"), "--student", f"student-kd={tmp_path / 's' / 'model'}",
              "--seconds", "0.5", "--runs", "1", "--warmup", "0", "--threads", "1", "--no-peer", "--no-onnx",
              "--no-int8"]
    rc = run_bench(common + ["--cer", str(tmp_path / "cer.json"), "--wer", "teacher=30", "--json", f"{out}.json",
                             "--markdown", f"{out}.md", "--plot", f"{out}.png"])
    assert rc == 0
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [(r["name"], r["wer"], r["cer"]) for r in rows] == [("teacher", 30.0, 12.5), ("student-kd", None, 20.25)]
    md = (tmp_path / "o.md").read_text()
    assert "| smaller | WER % | CER % |" in md
    assert md.rstrip().endswith("| 20.25 |") and "| 30.00 | 12.50 |" in md
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "names no row" not in capsys.readouterr().err  # student_kd matched student-kd
    assert run_bench(common + ["--cer", "teacher"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "asrc-bench footprint: error: --cer: 'teacher' is not name=CER (nor an existing JSON file)"
    assert run_bench(common + ["--int8-mode", "dynamic"]) == 1
    assert "--no-int8 and --int8-mode" in capsys.readouterr().err


# Near-coincident points as the demo measures them: teacher and peer (same size, same speed),
# student-int8 and student-onnx-int8 (about the same size and speed).
DEMO_ROWS = [footprint.Row("teacher", "asrc", "fp32", 1, 12.2, 1, rtf=0.0063, wer=40.0),
             footprint.Row("hf-peer", "transformers", "fp32", 1, 12.2, 1, rtf=0.0062),
             footprint.Row("student", "asrc", "fp32", 1, 8.1, 1, rtf=0.0042, wer=43.1),
             footprint.Row("student-int8", "asrc", "int8 (static-pos)", 1, 2.3, 1, rtf=0.0030, wer=43.3),
             footprint.Row("student-onnx", "onnxruntime", "fp32", 1, 8.1, 1, rtf=0.0035),
             footprint.Row("student-onnx-int8", "onnxruntime", "int8 (MatMul)", 1, 2.2, 1, rtf=0.0031)]
ENV = {"threads": 2, "input_seconds": 10.0}


def test_plot_labels_every_point_at_its_own_place():
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    fig = footprint.figure(DEMO_ROWS, ENV)
    try:
        fig.canvas.draw()  # positions the annotations' texts
        renderer = fig.canvas.get_renderer()
        panels = {ax.get_title(): ax for ax in fig.axes}
        assert set(panels) == {"size vs speed", "WER vs size", "WER vs speed"}
        expected = {"size vs speed": {r.name: (r.rtf, r.mb) for r in DEMO_ROWS},
                    "WER vs size": {r.name: (r.mb, r.wer) for r in DEMO_ROWS if r.wer is not None},
                    "WER vs speed": {r.name: (r.rtf, r.wer) for r in DEMO_ROWS if r.wer is not None}}
        for title, points in expected.items():
            ax = panels[title]
            labels = {a.get_text(): a for a in ax.texts}
            assert sorted(labels) == sorted(points), title  # one label per point, no merged labels
            plotted = {tuple(c.get_offsets()[0]) for c in ax.collections if len(c.get_offsets())}
            for name, xy in points.items():
                assert tuple(labels[name].xy) == pytest.approx(xy), (title, name)  # anchored at its point
                assert xy in plotted, (title, name)
            boxes = [Text.get_window_extent(a, renderer) for a in labels.values()]  # text, not its line
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), title
            frame = ax.get_window_extent(renderer)
            assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
                       for b in boxes), title
        # The Pareto front of WER vs size: the smallest model, then the best WER.
        front = next(line for line in panels["WER vs size"].lines if line.get_label() == "Pareto front")
        assert list(zip(*front.get_data())) == [(2.3, 43.3), (8.1, 43.1), (12.2, 40.0)]
    finally:
        plt.close(fig)
    # Without WERs: size vs speed alone.
    fig = footprint.figure([footprint.Row(r.name, r.runtime, r.precision, 1, r.mb, 1, rtf=r.rtf) for r in DEMO_ROWS],
                           ENV)
    assert [ax.get_title() for ax in fig.axes] == ["size vs speed"]
    plt.close(fig)


def test_plot_cer_panels_against_parameters_and_speed():
    """--cer adds CER vs parameters (log x) and CER vs speed, each with its Pareto front, after
    the WER panels; the panels wrap after three per row."""
    import matplotlib.pyplot as plt

    rows = [footprint.Row("teacher", "asrc", "fp32", 94_000_000, 378.0, 1, rtf=0.030, wer=32.6, cer=14.5),
            footprint.Row("kd", "asrc", "fp32", 38_000_000, 152.0, 1, rtf=0.012, wer=45.0, cer=22.0),
            footprint.Row("pruned_0.5", "asrc", "fp32", 47_000_000, 188.0, 1, rtf=0.016, wer=36.0, cer=16.0),
            footprint.Row("pruned_0.85", "asrc", "fp32", 14_000_000, 56.0, 1, rtf=0.006, wer=60.0, cer=30.0),
            footprint.Row("pruned_0.7", "asrc", "fp32", 28_000_000, 112.0, 1, rtf=0.013, cer=25.0)]
    fig = footprint.figure(rows, ENV)
    try:
        panels = {ax.get_title(): ax for ax in fig.axes}
        assert [ax.get_title() for ax in fig.axes] == ["size vs speed", "WER vs size", "WER vs speed",
                                                       "CER vs parameters", "CER vs speed"]
        assert len({ax.get_position().y0 for ax in fig.axes}) == 2  # two rows of panels
        ax = panels["CER vs parameters"]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "linear" and ax.get_xlabel() == "parameters (M)"
        assert sorted(a.get_text() for a in ax.texts) == sorted(r.name for r in rows)  # pruned_0.7: CER, no WER
        assert sorted(a.get_text() for a in panels["WER vs size"].texts) == sorted(
            r.name for r in rows if r.wer is not None)
        front = next(line for line in ax.lines if line.get_label() == "Pareto front")
        # by parameters each model here has a lower CER than every smaller one: all five on the front
        assert list(zip(*front.get_data())) == [(14.0, 30.0), (28.0, 25.0), (38.0, 22.0), (47.0, 16.0), (94.0, 14.5)]
        front = next(line for line in panels["CER vs speed"].lines if line.get_label() == "Pareto front")
        # by RTF: pruned_0.85 (0.006, 30), kd (0.012, 22), pruned_0.7 (0.013, 25) is beaten by kd,
        # pruned_0.5 (0.016, 16), teacher (0.030, 14.5)
        assert list(zip(*front.get_data())) == [(0.006, 30.0), (0.012, 22.0), (0.016, 16.0), (0.030, 14.5)]
    finally:
        plt.close(fig)
    # CER alone: size vs speed and the two CER panels, one row.
    fig = footprint.figure([footprint.Row(r.name, r.runtime, r.precision, r.params, r.mb, 1, rtf=r.rtf, cer=r.cer)
                            for r in rows], ENV)
    assert [ax.get_title() for ax in fig.axes] == ["size vs speed", "CER vs parameters", "CER vs speed"]
    plt.close(fig)


def test_pareto_front():
    assert footprint.pareto_front([(1, 5), (2, 3), (3, 4), (4, 1), (2, 3)]) == [(1, 5), (2, 3), (4, 1)]


def test_student_preset_may_be_a_spec_file(tmp_path):
    from asrc.errors import AsrcError

    path = tmp_path / "narrow.yaml"
    path.write_text("layers: {num: 2}\narchitecture: {embed_dim: 384, num_heads: 6, conv_channels: 256}\n")
    assert footprint._preset("student-4L-g2") == ("student-4L-g2", "student-4L-g2")
    assert footprint._preset(str(path)) == ("narrow", str(path))
    assert footprint._preset(f"mine={path}") == ("mine", str(path))
    with pytest.raises(AsrcError, match="neither a preset"):
        footprint._preset("student-9L")
    cfg = footprint.student_config(Wav2Vec2Config(), str(path))
    assert (cfg.num_layers, cfg.embed_dim, cfg.num_heads, cfg.conv_dim, cfg.ffn_dim) == (2, 384, 6, 256, 3072)
