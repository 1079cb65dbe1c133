"""The student spec: one description of a student, read the same way by every tool.

A student is described relative to its teacher: which transformer layers it keeps, what it
changes in the architecture, how it is initialised, and how it is distilled. ``asrc-train``
(``--student FILE``, or ``student:`` in its YAML), ``asrc-frontend-init --student``,
``asrc-bench footprint`` (its presets are specs) and the recipes' ``conf/student*.yaml`` all
read this; the original demo's ``demo_config.yaml`` is translated to it
(:func:`asrc.distill.demo_config.student_spec`).

.. code-block:: yaml

    layers:                # the transformer layers (omitted: all of the teacher's)
      num: 4               # default: the length of a ``select`` list, else the teacher's
      select: every_k      # every_k | first_k | last_k | [1, 4, 7, 10] (1-based teacher layers)
    architecture:          # Wav2Vec2Config keys changed on top of the teacher's config
      conv_groups: 2
      conv_channels: 256   # shorthand: every conv layer's channels (kernels, strides: the teacher's)
      embed_dim: 384
      ffn_dim: 1536
      num_heads: 6
      mask_time_prob: 0.05
    init:
      from: teacher        # teacher: copy what fits, derive grouped kernels (build_student);
                           # random: torch's initialisation (warm-start it with asrc-frontend-init)
      conv_init: lstsq     # lstsq | energy | block_diagonal (asrc.models.student)
    distill:               # the objective of asrc-train's asrc_distill model
      temperature: 2.0
      loss_weights: {kd_loss: 0.5, student_loss: 0.5, hidden_loss: 0.0}
      teacher_layer_map: null   # {student hidden state: teacher hidden state} for hidden_loss

Every section and key is optional; unknown keys are an error naming the key and the file.

More sections
    A compression method adds its own top-level section (``prune:``, ``qat:``) by registering
    a parser from its own package: ``register_section("prune", PruneSpec.from_dict)``, where
    ``from_dict(mapping, source)`` validates the section (``source`` names the file and section
    for its errors) and returns an object with ``to_dict()``. The parsed object is
    ``spec.sections["prune"]``; ``to_dict`` writes it back. The owner registers when its package
    is imported, so a tool that uses the section imports that package before reading specs; a
    spec naming a section nobody registered is an error that lists the registered ones.
"""

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from asrc.core.config_files import check_known_keys, read_yaml_mapping
from asrc.errors import ConfigError
from asrc.models.config import Wav2Vec2Config

__all__ = ["LOSS_TERMS", "DistillSpec", "LossWeights", "StudentSpec", "read_student_spec", "register_section",
           "SECTIONS"]

#: The terms of the distillation objective (:mod:`asrc.distill.losses`), in logging order.
LOSS_TERMS = ("kd_loss", "student_loss", "hidden_loss", "cos_embed_loss", "features_pen")

#: ``layers.select`` by name (asrc.models.student: ``select_teacher_layers``).
LAYER_SELECTIONS = ("every_k", "first_k", "last_k")
INIT_FROM = ("teacher", "random")
#: ``init.conv_init`` (asrc.models.student: ``build_student``).
CONV_INITS = ("lstsq", "energy", "block_diagonal")
# Architecture keys a spec does not take: the layer count is ``layers.num``.
_NOT_ARCHITECTURE = {"num_layers": "layers.num"}
#: Architecture shorthand: every conv layer's channels.
CONV_CHANNELS = "conv_channels"

#: Registered optional sections: name -> parser ``(mapping, source) -> object with to_dict()``.
SECTIONS: Dict[str, Callable[[Mapping, str], Any]] = {}


def register_section(name: str, parse: Callable[[Mapping, str], Any]) -> None:
    """Let specs carry a section ``name`` that ``parse(mapping, source)`` reads (see the module doc)."""
    if name in StudentSpec._YAML:
        raise ValueError(f"{name!r} is a core section of the student spec")
    if SECTIONS.get(name, parse) is not parse:
        raise ValueError(f"a section {name!r} is already registered by {SECTIONS[name]!r}")
    SECTIONS[name] = parse


def _mapping(d, source: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: must be a mapping, got {type(d).__name__}")
    return dict(d)


def _positive_number(value, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{source}={value!r} must be a finite number > 0")
    return float(value)


@dataclass
class LossWeights:
    """Weight of each term of the distillation objective (0 = not part of the loss)."""

    kd_loss: float = 1.0
    student_loss: float = 0.0
    hidden_loss: float = 0.0
    cos_embed_loss: float = 0.0
    features_pen: float = 0.0

    def __post_init__(self):
        bad = {k: v for k, v in self.to_dict().items()
               if isinstance(v, bool) or not (isinstance(v, numbers.Real) and v >= 0 and math.isfinite(v))}
        if bad:
            raise ConfigError(f"loss weights must be finite numbers >= 0, got {bad}")
        if not any(v > 0 for v in self.to_dict().values()):
            raise ConfigError(f"all loss weights are 0 ({self.to_dict()}): nothing to train")

    def to_dict(self) -> Dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[Mapping], source: str = "loss_weights") -> "LossWeights":
        d = dict(d or {})
        check_known_keys(d, LOSS_TERMS, source, "loss terms")
        return cls(**d)

    def total(self, terms):
        """Weighted sum of the terms (tensors) with a positive weight (each must be in ``terms``)."""
        active = [(name, w) for name, w in self.to_dict().items() if w > 0]
        missing = [name for name, _ in active if name not in terms]
        if missing:
            raise ValueError(f"loss terms {missing} have a positive weight but were not computed")
        return sum(w * terms[name] for name, w in active)


@dataclass
class DistillSpec:
    """How a student is distilled: ``model_conf`` of ``--model asrc_distill``.

    The one place the temperature is checked.
    """

    temperature: float = 1.0
    loss_weights: LossWeights = field(default_factory=LossWeights)
    teacher_layer_map: Optional[Dict[int, int]] = None

    @classmethod
    def from_dict(cls, d: Optional[Mapping], source: str = "distill") -> "DistillSpec":
        d = _mapping(d, source)
        check_known_keys(d, [f.name for f in dataclasses.fields(cls)], source)
        temperature = d.get("temperature")
        layer_map = d.get("teacher_layer_map")
        if layer_map is not None and not isinstance(layer_map, Mapping):
            raise ConfigError(f"{source}.teacher_layer_map={layer_map!r} must be a mapping "
                              f"{{student state: teacher state}} or null")
        return cls(temperature=1.0 if temperature is None else _positive_number(temperature, f"{source}.temperature"),
                   loss_weights=LossWeights.from_dict(d.get("loss_weights"), source=f"{source}.loss_weights"),
                   teacher_layer_map=None if not layer_map else dict(layer_map))

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "loss_weights": self.loss_weights.to_dict(),
                "teacher_layer_map": None if self.teacher_layer_map is None else dict(self.teacher_layer_map)}


LayerSelect = Union[str, List[int]]


@dataclass
class StudentSpec:
    """A student relative to its teacher (the module doc gives the YAML)."""

    #: Transformer layers: ``None`` = the teacher's count (or the length of a ``select`` list).
    num_layers: Optional[int] = None
    #: ``every_k``, ``first_k``, ``last_k`` or 1-based teacher layers, one per student layer.
    layer_select: LayerSelect = "every_k"
    #: Wav2Vec2Config keys changed on top of the teacher's, plus ``conv_channels``.
    architecture: Dict[str, Any] = field(default_factory=dict)
    #: ``teacher`` or ``random``.
    init_from: str = "teacher"
    conv_init: str = "lstsq"
    #: ``None``: no ``distill:`` section (the trainer's own model_conf, or CTC alone).
    distill: Optional[DistillSpec] = None
    #: Registered optional sections (``prune``, ``qat``, ...), parsed by their owners.
    sections: Dict[str, Any] = field(default_factory=dict)

    # The YAML's sections and their keys.
    _YAML = {"layers": ("num", "select"), "architecture": None, "init": ("from", "conv_init"), "distill": None}

    def __post_init__(self):
        self.architecture = dict(self.architecture)
        select = self.layer_select
        if isinstance(select, str):
            if select not in LAYER_SELECTIONS:
                raise ConfigError(f"layers.select={select!r} is not one of {LAYER_SELECTIONS} or a list of "
                                  f"1-based teacher layers")
        elif not (isinstance(select, (list, tuple)) and select
                  and all(type(i) is int and i >= 1 for i in select)):
            raise ConfigError(f"layers.select={select!r} must be {', '.join(LAYER_SELECTIONS)} or a list of "
                              f"1-based teacher layers")
        else:
            self.layer_select = list(select)
            if self.num_layers is None:
                self.num_layers = len(select)
            elif self.num_layers != len(select):
                raise ConfigError(f"layers.num={self.num_layers} but layers.select lists {len(select)} layers")
        if self.num_layers is not None and (type(self.num_layers) is not int or self.num_layers < 1):
            raise ConfigError(f"layers.num={self.num_layers!r} must be an integer >= 1")
        for key, where in _NOT_ARCHITECTURE.items():
            if key in self.architecture:
                raise ConfigError(f"architecture.{key}: set {where} instead")
        check_known_keys(self.architecture, [f.name for f in dataclasses.fields(Wav2Vec2Config)] + [CONV_CHANNELS],
                         "architecture", "Wav2Vec2Config keys")
        channels = self.architecture.get(CONV_CHANNELS)
        if channels is not None and (type(channels) is not int or channels < 1):
            raise ConfigError(f"architecture.{CONV_CHANNELS}={channels!r} must be an integer >= 1")
        if CONV_CHANNELS in self.architecture and "conv_layers" in self.architecture:
            raise ConfigError(f"architecture: give conv_layers or {CONV_CHANNELS}, not both")
        if self.init_from not in INIT_FROM:
            raise ConfigError(f"init.from={self.init_from!r} is not one of {INIT_FROM}")
        if self.conv_init not in CONV_INITS:
            raise ConfigError(f"init.conv_init={self.conv_init!r} is not one of {CONV_INITS}")

    # -- reading and writing --------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: Optional[Mapping], source: str = "student spec") -> "StudentSpec":
        d = _mapping(d, source)
        check_known_keys(d, list(cls._YAML) + sorted(SECTIONS), source)
        parts = {name: _mapping(d.get(name), f"{source}: {name}") for name in ("layers", "init")}
        for name, keys in cls._YAML.items():
            if keys is not None:
                check_known_keys(parts[name], keys, f"{source}: {name}")
        layers, init = parts["layers"], parts["init"]
        try:
            return cls(num_layers=layers.get("num"), layer_select=layers.get("select", "every_k"),
                       architecture=_mapping(d.get("architecture"), f"{source}: architecture"),
                       init_from=init.get("from", "teacher"), conv_init=init.get("conv_init", "lstsq"),
                       distill=(None if d.get("distill") is None
                                else DistillSpec.from_dict(d["distill"], source=f"{source}: distill")),
                       sections={name: SECTIONS[name](_mapping(d[name], f"{source}: {name}"), f"{source}: {name}")
                                 for name in SECTIONS if d.get(name) is not None})
        except ConfigError as e:
            message = str(e)
            raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from e

    @classmethod
    def from_yaml_file(cls, path) -> "StudentSpec":
        return cls.from_dict(read_yaml_mapping(path), source=str(path))

    def to_dict(self) -> dict:
        """The YAML mapping (sections at their defaults are written too)."""
        d = {"layers": {"num": self.num_layers, "select": self.layer_select},
             "architecture": dict(self.architecture),
             "init": {"from": self.init_from, "conv_init": self.conv_init}}
        if self.distill is not None:
            d["distill"] = self.distill.to_dict()
        for name, section in self.sections.items():
            d[name] = section.to_dict()
        return d

    # -- the student's architecture -------------------------------------------------------

    def config_changes(self, teacher: Optional[Wav2Vec2Config] = None) -> Dict[str, Any]:
        """The Wav2Vec2Config keys the student changes on top of ``teacher``'s config (needed
        only for ``conv_channels``)."""
        changes = dict(self.architecture)
        channels = changes.pop(CONV_CHANNELS, None)
        if channels is not None:
            if teacher is None:
                raise ConfigError(f"architecture.{CONV_CHANNELS} needs the teacher's config (its kernels and strides)")
            changes["conv_layers"] = [[channels, k, s] for _, k, s in teacher.conv_layers]
        if self.num_layers is not None:
            changes["num_layers"] = self.num_layers
        return changes

    def student_config(self, teacher: Wav2Vec2Config) -> Wav2Vec2Config:
        """The student's full architecture for this ``teacher``."""
        return Wav2Vec2Config.from_dict({**teacher.to_dict(), **self.config_changes(teacher)},
                                        source="student spec architecture")

    # -- asrc-train's options (asrc.espnet: encoder_conf of asrc_wav2vec2, model_conf of asrc_distill) --

    def encoder_conf(self, teacher: Optional[Wav2Vec2Config] = None) -> Dict[str, Any]:
        """``encoder_conf`` keys (all but ``init``): with ``init.from: teacher`` the student is built
        from ``encoder_conf.init`` (``layer_init``); with ``random`` ``init`` is a model made from
        this spec (e.g. by asrc-frontend-init), whose architecture ``config`` then checks."""
        conf: Dict[str, Any] = {"config": self.config_changes(teacher)}
        if self.init_from == "teacher":
            conf["layer_init"] = self.layer_select
            if self.conv_init != CONV_INITS[0]:
                conf["conv_init"] = self.conv_init
        return conf

    def model_conf(self) -> Dict[str, Any]:
        """``model_conf`` keys of the distillation (all but ``teacher``); ``{}`` without ``distill:``."""
        if self.distill is None:
            return {}
        conf = self.distill.to_dict()
        if conf["teacher_layer_map"] is None:
            del conf["teacher_layer_map"]
        return conf

    def replace(self, **changes) -> "StudentSpec":
        return dataclasses.replace(self, **changes)


def read_student_spec(spec: Union[str, os.PathLike, Mapping, StudentSpec, None], source: Optional[str] = None
                      ) -> Optional[StudentSpec]:
    """A spec from a YAML file, a mapping (inline in another YAML) or a spec; ``None`` stays ``None``."""
    if spec is None or isinstance(spec, StudentSpec):
        return spec
    if isinstance(spec, Mapping):
        return StudentSpec.from_dict(spec, source=source or "student spec")
    return StudentSpec.from_yaml_file(spec)

