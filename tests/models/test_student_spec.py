"""The student spec: its errors, its extension hook, and that the dialects it replaced (the demo
YAML, ESPnet's encoder_conf/model_conf, flat model YAMLs, footprint presets) give the same
student from it: the same architecture and, for the same seed, the same weights."""

from pathlib import Path

import pytest
import torch
import yaml

from asrc.distill.demo_config import read_demo_config, student_spec, translate
from asrc.errors import ConfigError
from asrc.models import Wav2Vec2Config, build_model, load_config
from asrc.models import student_spec as spec_module
from asrc.models.student import build_from_spec, build_student
from asrc.models.student_spec import DistillSpec, StudentSpec, read_student_spec, register_section

EGS = Path(__file__).resolve().parents[2] / "egs"

# The flat model YAMLs the recipes shipped before the spec (conf/student_narrow_model.yaml).
AN4_FLAT = """conv_layers:
- [64, 10, 5]
- [64, 3, 2]
- [64, 3, 2]
- [64, 3, 2]
- [64, 3, 2]
- [64, 2, 2]
- [64, 2, 2]
extractor_mode: group_norm
conv_bias: false
conv_groups: 2
conv_share: false
embed_dim: 96
ffn_dim: 384
num_heads: 4
num_layers: 4
layer_reuse: 1
layer_norm_first: true
pos_conv_kernel: 31
pos_conv_groups: 16
layer_norm_eps: 1.0e-05
dropout: 0.1
attention_dropout: 0.1
activation_dropout: 0.0
feature_dropout: 0.0
final_dropout: 0.0
layer_drop: 0.0
mask_time_prob: 0.0
mask_time_length: 5
mask_channel_prob: 0.0
mask_channel_length: 16
normalize_waveform: true
vocab_size: 32
"""
LIBRISPEECH_FLAT = """conv_layers:
- [256, 10, 5]
- [256, 3, 2]
- [256, 3, 2]
- [256, 3, 2]
- [256, 3, 2]
- [256, 2, 2]
- [256, 2, 2]
extractor_mode: group_norm
conv_bias: false
conv_groups: 2
embed_dim: 384
ffn_dim: 1536
num_heads: 6
num_layers: 4
layer_norm_first: false
pos_conv_kernel: 128
pos_conv_groups: 16
dropout: 0.1
attention_dropout: 0.1
activation_dropout: 0.0
final_dropout: 0.0
layer_drop: 0.0
mask_time_prob: 0.05
vocab_size: 32
normalize_waveform: false
"""

TINY_TEACHER = Wav2Vec2Config(conv_layers=[[16, 10, 5], [16, 3, 2], [16, 3, 2]], embed_dim=32, ffn_dim=64,
                              num_heads=4, num_layers=6, pos_conv_kernel=8, pos_conv_groups=4)


def tiny_teacher():
    torch.manual_seed(1)
    return build_model(TINY_TEACHER, [f"t{i}" for i in range(TINY_TEACHER.vocab_size)]).eval()


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_keys_name_the_key_and_the_file(tmp_path):
    for text, key in [("layer: {num: 2}", "['layer']"), ("layers: {nm: 2}", "layers: unknown keys ['nm']"),
                      ("architecture: {num_layer: 2}", "unknown Wav2Vec2Config keys ['num_layer']"),
                      ("distill: {loss_weights: {kd: 1}}", "unknown loss terms ['kd']"),
                      ("distill: {temprature: 2}", "distill: unknown keys ['temprature']")]:
        path = tmp_path / "s.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as e:
            StudentSpec.from_yaml_file(path)
        assert str(e.value).startswith(str(path)) and key in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("d,match", [
    ({"layers": {"select": "every_2"}}, "layers.select='every_2'"),
    ({"layers": {"num": 3, "select": [1, 2]}}, "layers.num=3 but layers.select lists 2"),
    ({"layers": {"num": 0}}, "layers.num=0"),
    ({"architecture": {"num_layers": 2}}, "set layers.num instead"),
    ({"architecture": {"conv_channels": 8, "conv_layers": [[8, 10, 5]]}}, "not both"),
    ({"init": {"from": "somewhere"}}, "init.from='somewhere'"),
    ({"init": {"conv_init": "svd"}}, "init.conv_init='svd'"),
    ({"distill": {"temperature": 0}}, "distill.temperature=0 must be a finite number > 0"),
    ({"distill": {"temperature": True}}, "must be a finite number > 0"),
    ({"distill": {"temperature": float("inf")}}, "distill.temperature=inf must be a finite number > 0"),
    ({"distill": {"temperature": float("nan")}}, "distill.temperature=nan must be a finite number > 0"),
    ({"distill": {"loss_weights": {"kd_loss": float("inf")}}}, "loss weights must be finite numbers >= 0"),
    ({"distill": {"loss_weights": {"kd_loss": 1, "student_loss": float("nan")}}}, "must be finite numbers >= 0"),
    ({"distill": {"loss_weights": {"kd_loss": 0}}}, "nothing to train"),
])
def test_bad_values(d, match):
    with pytest.raises(ConfigError, match=match):
        StudentSpec.from_dict(d, source="s.yaml")


def test_round_trip_and_architecture():
    spec = StudentSpec.from_dict({"layers": {"select": [1, 3, 6]}, "architecture": {"conv_channels": 8, "embed_dim": 16,
                                                                                    "num_heads": 2},
                                  "distill": {"temperature": 3, "teacher_layer_map": {1: 2}}})
    assert spec.num_layers == 3 and spec.distill.temperature == 3.0
    assert StudentSpec.from_dict(spec.to_dict()) == spec
    cfg = spec.student_config(TINY_TEACHER)
    assert cfg.conv_layers == [[8, 10, 5], [8, 3, 2], [8, 3, 2]] and (cfg.num_layers, cfg.embed_dim) == (3, 16)
    assert cfg.ffn_dim == TINY_TEACHER.ffn_dim  # what the spec does not change is the teacher's
    assert spec.encoder_conf(TINY_TEACHER) == {"layer_init": [1, 3, 6], "config": {
        "conv_layers": [[8, 10, 5], [8, 3, 2], [8, 3, 2]], "embed_dim": 16, "num_heads": 2, "num_layers": 3}}
    assert spec.model_conf() == {"temperature": 3.0, "teacher_layer_map": {1: 2}, "loss_weights": {
        "kd_loss": 1.0, "student_loss": 0.0, "hidden_loss": 0.0, "cos_embed_loss": 0.0, "features_pen": 0.0}}
    with pytest.raises(ConfigError, match="conv_channels needs the teacher's config"):
        spec.encoder_conf()
    assert read_student_spec(None) is None and read_student_spec(spec) is spec


class _PruneSpec:
    """A stand-in for a section a compression method registers."""

    def __init__(self, d, source):
        if set(d) - {"sparsity"}:
            raise ConfigError(f"{source}: unknown keys {sorted(set(d) - {'sparsity'})}")
        self.sparsity = d.get("sparsity", 0.0)

    def to_dict(self):
        return {"sparsity": self.sparsity}


def test_registered_sections_are_parsed_by_their_owner(monkeypatch):
    monkeypatch.setattr(spec_module, "SECTIONS", {})
    with pytest.raises(ConfigError, match=r"s.yaml: unknown keys \['prune'\]"):
        StudentSpec.from_dict({"prune": {"sparsity": 0.5}}, source="s.yaml")
    register_section("prune", _PruneSpec)
    spec = StudentSpec.from_dict({"layers": {"num": 2}, "prune": {"sparsity": 0.5}}, source="s.yaml")
    assert spec.sections["prune"].sparsity == 0.5
    assert spec.to_dict()["prune"] == {"sparsity": 0.5}
    with pytest.raises(ConfigError, match=r"s.yaml: prune: unknown keys \['rate'\]"):
        StudentSpec.from_dict({"prune": {"rate": 1}}, source="s.yaml")
    for core in ("layers", "architecture", "init", "distill"):
        with pytest.raises(ValueError, match="core section"):
            register_section(core, _PruneSpec)
    with pytest.raises(ValueError, match="already registered"):
        register_section("prune", lambda d, source: d)


# ---- the dialects it replaces give the same student ----

def test_demo_yaml_is_the_an4_spec_and_builds_the_same_student():
    demo = read_demo_config(EGS / "demo" / "demo_config.yaml")
    spec = StudentSpec.from_yaml_file(EGS / "an4" / "conf" / "student.yaml")
    assert student_spec(demo) == spec
    # the demo's translation (asrc-train options) is the spec's
    out = translate(demo)
    assert {k: v for k, v in out["encoder_conf"].items() if k != "init"} == spec.encoder_conf()
    assert {k: v for k, v in out["model_conf"].items() if k != "teacher"} == spec.model_conf()
    teacher = tiny_teacher()
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    old, old_report = build_student(teacher, teacher.config.replace(num_layers=4, conv_groups=2), "every_k",
                                    calibration=wav)
    torch.manual_seed(5)
    new, new_report = build_from_spec(teacher, spec, calibration=wav)
    assert new.config == old.config and new.config.conv_groups == 2 and new.config.num_layers == 4
    assert same_weights(new, old) and new_report.layer_map == old_report.layer_map == [1, 2, 4, 5]


def test_espnet_encoder_conf_dialect_is_the_librispeech_spec():
    # conf/distill.yaml before the spec: encoder_conf / model_conf written out.
    old_encoder_conf = {"layer_init": "every_k", "config": {"num_layers": 4, "conv_groups": 2, "mask_time_prob": 0.05,
                                                            "layer_drop": 0.0}}
    old_model_conf = {"temperature": 2.0, "loss_weights": {"kd_loss": 0.5, "student_loss": 0.5, "hidden_loss": 0.0,
                                                           "cos_embed_loss": 0.0, "features_pen": 0.0}}
    spec = StudentSpec.from_yaml_file(EGS / "librispeech" / "conf" / "student.yaml")
    assert spec.encoder_conf(Wav2Vec2Config()) == old_encoder_conf
    assert spec.model_conf() == old_model_conf
    assert DistillSpec.from_dict(old_model_conf) == spec.distill


@pytest.mark.parametrize("flat,spec_path,teacher", [
    (AN4_FLAT, EGS / "an4" / "conf" / "student_narrow.yaml", EGS / "an4" / "teacher"),
    (LIBRISPEECH_FLAT, EGS / "librispeech" / "conf" / "student_narrow.yaml", None),  # a wav2vec2-base teacher
])
def test_flat_model_yaml_is_the_narrow_spec(flat, spec_path, teacher):
    teacher_config = load_config(teacher) if teacher else Wav2Vec2Config()
    spec = StudentSpec.from_yaml_file(spec_path)
    old = Wav2Vec2Config.from_dict(yaml.safe_load(flat))
    assert spec.init_from == "random"
    assert spec.student_config(teacher_config) == old
    if teacher is not None:  # the same random initialisation (asrc-frontend-init's seed), the same weights
        torch.manual_seed(0)
        a = build_model(old, [f"t{i}" for i in range(old.vocab_size)])
        torch.manual_seed(0)
        teacher_model = build_model(teacher_config, [f"t{i}" for i in range(old.vocab_size)])
        torch.manual_seed(0)
        b, report = build_from_spec(teacher_model, spec)
        assert report is None and same_weights(a, b)


def _old_preset_config(teacher: Wav2Vec2Config, preset: dict, tiny: bool = False) -> Wav2Vec2Config:
    """asrc-bench footprint's presets before the spec (plain Wav2Vec2Config changes)."""
    changes = dict(preset)
    channels = changes.pop("conv_channels", None)
    if tiny:
        for key in ("embed_dim", "ffn_dim"):
            if key in changes:
                changes[key] = getattr(teacher, key) // 2
        if "num_heads" in changes:
            changes["num_heads"] = teacher.num_heads // 2
        if channels is not None:
            channels = teacher.conv_dim // 2
        changes["num_layers"] = min(changes.get("num_layers", teacher.num_layers), 2)
    if channels is not None:
        changes["conv_layers"] = [[channels, k, s] for _, k, s in teacher.conv_layers]
    return teacher.replace(**changes)


OLD_PRESETS = {
    "student-4L-g2": dict(num_layers=4, conv_groups=2),
    "student-4L-g2-d384-c256": dict(num_layers=4, conv_groups=2, embed_dim=384, ffn_dim=1536, num_heads=6,
                                    conv_channels=256),
    "student-4L-g2-d384": dict(num_layers=4, conv_groups=2, embed_dim=384, ffn_dim=1536, num_heads=6),
    "student-4L-g2-d512-c256": dict(num_layers=4, conv_groups=2, embed_dim=512, ffn_dim=2048, num_heads=8,
                                    conv_channels=256),
}


@pytest.mark.parametrize("name", sorted(OLD_PRESETS))
def test_footprint_presets_are_specs_of_the_same_students(name):
    from asrc.bench import footprint

    assert set(footprint.STUDENT_PRESETS) == set(OLD_PRESETS)
    for teacher, tiny in ((Wav2Vec2Config(), False), (footprint.TINY_TEACHER, True)):
        assert footprint.student_config(teacher, name, tiny=tiny) == _old_preset_config(teacher, OLD_PRESETS[name], tiny)
