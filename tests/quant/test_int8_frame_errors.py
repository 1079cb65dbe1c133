"""egs/an4/local/int8_frame_errors.py (the bias-correction table of egs/an4/RESULTS.md): the float
model against itself has no error on either path, an int8 model has some, and every model gets a
row per path."""

import importlib.util
from pathlib import Path

from asrc.models import save_model_dir
from asrc.models.quantized import save_quantized
from asrc.quant import quantize_model
from quant_helpers import write_wav_dir

SCRIPT = Path(__file__).resolve().parents[2] / "egs" / "an4" / "local" / "int8_frame_errors.py"


def _script():
    spec = importlib.util.spec_from_file_location("int8_frame_errors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frame_errors_table(trained_tiny, calibration_set, structured_set, tmp_path, capsys):
    tokens = ["<blank>", "A", "B", "C", "|"]
    save_model_dir(trained_tiny, tmp_path / "float", tokens)
    qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set)
    save_quantized(qmodel, spec, tmp_path / "int8", tokens)
    data = tmp_path / "data"
    write_wav_dir(data, structured_set)
    assert _script().main([str(tmp_path / "float"), str(data), f"same={tmp_path / 'float'}",
                           str(tmp_path / "int8")]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = {(r[0].strip(), r[1].strip()): (float(r[2]), float(r[3])) for r in rows[1:]}
    # a bare DIR is named after itself, as asrc-bench footprint names a --student DIR
    assert set(rows) == {("same", "asrc CPU path"), ("same", "torch modules"),
                         ("int8", "asrc CPU path"), ("int8", "torch modules")}
    assert rows[("same", "asrc CPU path")] == (0.0, 0.0) and rows[("same", "torch modules")] == (0.0, 0.0)
    assert all(max(v) > 0 for k, v in rows.items() if k[0] != "same")
