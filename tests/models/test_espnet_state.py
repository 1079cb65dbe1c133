"""asrc.models.io.read_espnet_state: the model state dict in each form of ESPnet checkpoint file,
and the damage it refuses (asrc-export and ESPnet inference both read through it)."""

import pytest
import torch

from asrc.errors import CheckpointError
from asrc.models.io import read_espnet_state


def _state():
    return {"encoder.w": torch.randn(3, 2), "ctc.b": torch.zeros(4)}


@pytest.mark.parametrize("form", ["plain", "resume", "deepspeed"])
def test_each_form_gives_the_model_state(tmp_path, form):
    state = _state()
    name, saved = {"plain": ("valid.cer.ave.pth", state),
                   "resume": ("checkpoint.pth", {"model": state, "optimizers": [{"lr": 0.1}], "reporter": {"x": 1}}),
                   "deepspeed": ("mp_rank_00_model_states.pt", {"module": state})}[form]
    torch.save(saved, tmp_path / name)
    got = read_espnet_state(tmp_path / name)
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)


def test_damage_is_named(tmp_path):
    state = _state()
    state["encoder.w"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="nan.pth: encoder.w has 1 NaN"):
        read_espnet_state(tmp_path / "nan.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        read_espnet_state(tmp_path / "list.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "nan.pth").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pth"):
        read_espnet_state(tmp_path / "cut.pth")
