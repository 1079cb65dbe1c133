"""Non-finite numbers anywhere in the distillation objective are errors naming the key (audit B, item 2).

YAML spells them ``.inf``, ``-.inf`` and ``.nan``; each used to pass the ``> 0`` / ``>= 0`` checks
(or reach ``int()``) and train with a NaN loss that skipped every update, exit status 0.
"""
import math
from pathlib import Path

import pytest
import torch

from asrc.distill.demo_config import read_demo_config, translate
from asrc.distill.losses import kd_loss
from asrc.distill.pairing import resolve_layer_map
from asrc.errors import ConfigError
from asrc.models import Wav2Vec2Config
from asrc.models.student_spec import DistillSpec, LossWeights, StudentSpec

DEMO = Path(__file__).resolve().parents[2] / "egs" / "demo" / "demo_config.yaml"
TINY = dict(conv_layers=[[16, 10, 5], [16, 4, 4], [16, 2, 2]], embed_dim=32, ffn_dim=64, num_heads=2,
            num_layers=6, pos_conv_kernel=8, pos_conv_groups=4)


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_spec_file_temperature_non_finite(tmp_path, value):
    path = tmp_path / "Tinf.yaml"
    path.write_text(f"distill: {{temperature: {value}}}\n")
    with pytest.raises(ConfigError) as e:
        StudentSpec.from_yaml_file(path)
    message = str(e.value)
    assert message.startswith(str(path)) and "distill.temperature=" in message
    assert "finite number > 0" in message and "\n" not in message


@pytest.mark.parametrize("term", ["kd_loss", "student_loss", "hidden_loss", "cos_embed_loss", "features_pen"])
@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_spec_file_loss_weight_non_finite(tmp_path, term, value):
    path = tmp_path / "w.yaml"
    path.write_text(f"distill: {{loss_weights: {{kd_loss: 1, {term}: {value}}}}}\n")
    with pytest.raises(ConfigError) as e:
        StudentSpec.from_yaml_file(path)
    message = str(e.value)
    assert message.startswith(str(path)) and term in message and "finite" in message


def test_model_conf_path_rejects_infinite_temperature():
    # asrc_distill's model_conf (--model_conf temperature=inf) goes through DistillSpec.from_dict too.
    with pytest.raises(ConfigError, match=r"model_conf.temperature=inf must be a finite number > 0"):
        DistillSpec.from_dict({"temperature": math.inf}, source="model_conf")
    with pytest.raises(ConfigError, match="finite"):
        LossWeights(kd_loss=math.inf)
    assert DistillSpec.from_dict({"temperature": 1e30}).temperature == 1e30  # large but finite is fine


def test_kd_loss_rejects_infinite_temperature():
    x = torch.randn(1, 3, 5)
    with pytest.raises(ValueError, match="finite"):
        kd_loss(x, x, torch.tensor([3]), temperature=math.inf)


@pytest.mark.parametrize("pair", [{1: math.inf}, {math.nan: 2}, {1: 2.5}, {True: 2}])
def test_teacher_layer_map_needs_integers(pair):
    teacher = Wav2Vec2Config(**TINY)
    with pytest.raises(ConfigError, match="is not an integer pair"):
        resolve_layer_map(pair, teacher.replace(num_layers=2), teacher)
    assert resolve_layer_map({1: 3.0}, teacher.replace(num_layers=2), teacher) == {1: 3}


@pytest.mark.parametrize("section,key,value", [
    ("general", "temperature", math.inf),
    ("final_loss_coeff", "kd_loss", math.nan),
    ("optimization", "learning_rate", math.inf),
    ("optimization", "num_lr_warm_up_epoch", math.inf),
])
def test_demo_config_non_finite(section, key, value):
    demo = read_demo_config(DEMO)
    demo["knowledge_distillation"].setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match="finite") as e:
        translate(demo)
    assert key in str(e.value)
