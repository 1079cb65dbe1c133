"""The original compression demo's ``demo_config.yaml``, mapped onto asrc-train options.

The deprecated Knowledge-Distillation-Toolkit configured its wav2vec 2.0 demo with one YAML
file (sections ``data_loader`` and ``knowledge_distillation: {general, optimization,
final_loss_coeff, student_model, pytorch_lightning_trainer}``); its student fork added
``conv_groups`` and ``change_conv_layers``. asrc reads a file in those terms
(``egs/demo/demo_config.yaml``) and :func:`translate` maps every key onto the options of
:class:`asrc.espnet.task.AsrcASRTask`. What describes the student (``student_model``,
``general.temperature`` and ``teacher_layer_map``, ``final_loss_coeff``) is first translated
to a student spec (:func:`student_spec`, :mod:`asrc.models.student_spec`: the keys in
brackets), which gives the encoder and model options as it does for every other tool:

===================================================  =============================================
demo key                                             asrc-train / ESPnet option
===================================================  =============================================
data_loader.train_data_path / val_data_path          ``train_data_dir`` / ``valid_data_dir``
data_loader.token_list                               ``token_list`` (default: the teacher's)
data_loader.train_batch_size / val_batch_size        ``batch_type: sorted``, ``batch_size`` /
                                                     ``valid_batch_size`` (utterances per batch)
data_loader.num_workers                              ``num_workers``
general.num_gpu_used                                 ``ngpu``
general.teacher_model_path                           ``model_conf.teacher`` (an asrc model directory)
general.temperature                                  [``distill.temperature``] ``model_conf.temperature``
general.teacher_layer_map                            [``distill.teacher_layer_map``]
                                                     ``model_conf.teacher_layer_map`` (hidden_loss)
optimization.max_epoch / num_iters_per_epoch         ``max_epoch`` / ``num_iters_per_epoch``
optimization.optimize_method                         ``optim`` (``adam``, ``adamw``, ``sgd``)
optimization.learning_rate                           ``optim_conf.lr``
optimization.scheduler_method                        ``""``: none; ``linear_decay_with_warm_up``:
                                                     ``piecewiselinearwarmuplr`` 0 -> lr over
                                                     ``num_lr_warm_up_epoch`` epochs, then -> 0 at
                                                     the last update; ``cosine_anneal``:
                                                     ``CosineAnnealingLR`` over ``max_epoch``
final_loss_coeff.{kd_loss, student_loss,             ``model_conf.loss_weights``
cos_embed_loss, features_pen, hidden_loss}          [``distill.loss_weights``]
student_model.num_trans_layer_student_model          [``layers.num``] ``encoder_conf.config.num_layers``
student_model.student_trans_layer_init_method        [``layers.select``] ``encoder_conf.layer_init``
                                                     (every_k, first_k, last_k or a list of
                                                     1-based teacher layers)
student_model.student_init_model_path                ``encoder_conf.init`` (default: the teacher)
student_model.change_conv_layers / conv_groups       [``architecture.conv_groups``]
                                                     ``encoder_conf.config.conv_groups`` when
                                                     ``change_conv_layers`` is true; false = the
                                                     teacher's front end, conv_groups ignored
pytorch_lightning_trainer.accumulate_grad_batches    ``accum_grad``
pytorch_lightning_trainer.precision                  ``use_amp`` (16) / not (32)
pytorch_lightning_trainer.seed                       ``seed``
===================================================  =============================================

``ctc_only=True`` gives the baseline for the same student: the same initialisation, data and
schedule (so the same number of updates), trained with CTC on the labels alone
(``--model asrc_ctc``). Unknown keys anywhere are errors naming the key and the known ones.
"""

import logging
import math
from typing import Any, Dict, Mapping

from asrc.core.config_files import read_yaml_mapping
from asrc.errors import ConfigError
from asrc.models.student_spec import LOSS_TERMS, StudentSpec

__all__ = ["SCHEMA", "read_demo_config", "student_spec", "translate", "translate_file"]

logger = logging.getLogger(__name__)

#: Every key a demo config may have, by section.
SCHEMA = {
    "data_loader": {"train_data_path", "val_data_path", "token_list", "train_batch_size", "val_batch_size",
                    "num_workers"},
    "knowledge_distillation": {
        "general": {"num_gpu_used", "teacher_model_path", "temperature", "teacher_layer_map"},
        "optimization": {"max_epoch", "num_iters_per_epoch", "optimize_method", "scheduler_method",
                         "learning_rate", "num_lr_warm_up_epoch"},
        "final_loss_coeff": set(LOSS_TERMS),
        "student_model": {"num_trans_layer_student_model", "student_trans_layer_init_method",
                          "student_init_model_path", "change_conv_layers", "conv_groups"},
        "pytorch_lightning_trainer": {"accumulate_grad_batches", "precision", "seed"},
    },
}

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("", "linear_decay_with_warm_up", "cosine_anneal")


def _check_keys(d: Any, schema, where: str, source: str):
    if d is None:
        return
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: {where or 'the file'} must be a mapping, got {type(d).__name__}")
    known = set(schema)
    unknown = sorted(set(d) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{source}: unknown keys {[prefix + k for k in unknown]} "
                          f"(known in {where or 'the top level'}: {sorted(known)})")
    if isinstance(schema, dict):
        for key, sub in schema.items():
            _check_keys(d.get(key), sub, f"{where}.{key}" if where else key, source)


def _int(value, key: str, source: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{source}: {key}={value!r} must be an integer >= {minimum}")
    return value


def _number(value, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{source}: {key}={value!r} must be a finite number > 0")
    return float(value)


def read_demo_config(path) -> dict:
    return read_yaml_mapping(path)


def translate(demo: Mapping, ctc_only: bool = False, source: str = "demo_config") -> Dict[str, Any]:
    """asrc-train options (``AsrcASRTask`` argument names) for a demo config mapping."""
    _check_keys(demo, SCHEMA, "", source)
    data = demo.get("data_loader") or {}
    kd = demo.get("knowledge_distillation") or {}
    general = kd.get("general") or {}
    optimization = kd.get("optimization") or {}
    student = kd.get("student_model") or {}
    trainer = kd.get("pytorch_lightning_trainer") or {}
    out: Dict[str, Any] = {}

    # data_loader
    for key, option in (("train_data_path", "train_data_dir"), ("val_data_path", "valid_data_dir"),
                        ("token_list", "token_list")):
        if data.get(key) is not None:
            out[option] = str(data[key])
    if data.get("train_batch_size") is not None:
        out["batch_type"] = "sorted"
        out["batch_size"] = _int(data["train_batch_size"], "data_loader.train_batch_size", source, 1)
    if data.get("val_batch_size") is not None:
        out["valid_batch_type"] = "sorted"
        out["valid_batch_size"] = _int(data["val_batch_size"], "data_loader.val_batch_size", source, 1)
    if data.get("num_workers") is not None:
        out["num_workers"] = _int(data["num_workers"], "data_loader.num_workers", source)

    # general
    teacher = general.get("teacher_model_path")
    if not teacher:
        raise ConfigError(f"{source}: knowledge_distillation.general.teacher_model_path is required "
                          f"(the asrc model directory of the teacher)")
    teacher = str(teacher)
    if general.get("num_gpu_used") is not None:
        out["ngpu"] = _int(general["num_gpu_used"], "general.num_gpu_used", source)

    # pytorch_lightning_trainer
    accum = _int(trainer.get("accumulate_grad_batches", 1), "pytorch_lightning_trainer.accumulate_grad_batches",
                 source, 1)
    out["accum_grad"] = accum
    precision = trainer.get("precision", 32)
    if precision not in (16, 32):
        raise ConfigError(f"{source}: pytorch_lightning_trainer.precision={precision!r} must be 16 or 32")
    out["use_amp"] = precision == 16
    if trainer.get("seed") is not None:
        out["seed"] = _int(trainer["seed"], "pytorch_lightning_trainer.seed", source)

    # optimization
    max_epoch = optimization.get("max_epoch")
    if max_epoch is not None:
        out["max_epoch"] = _int(max_epoch, "optimization.max_epoch", source, 1)
    iters = optimization.get("num_iters_per_epoch")
    if iters is not None:
        out["num_iters_per_epoch"] = _int(iters, "optimization.num_iters_per_epoch", source, 1)
    method = optimization.get("optimize_method", "adamw")
    if method not in OPTIMIZERS:
        raise ConfigError(f"{source}: optimization.optimize_method={method!r} must be one of {list(OPTIMIZERS)}")
    out["optim"] = method
    lr = _number(optimization.get("learning_rate", 5e-5), "optimization.learning_rate", source)
    out["optim_conf"] = {"lr": lr}
    scheduler = optimization.get("scheduler_method") or ""
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"{source}: optimization.scheduler_method={scheduler!r} must be one of {list(SCHEDULERS)}")
    warm_epochs = optimization.get("num_lr_warm_up_epoch", 0)
    warm_epochs = _number(warm_epochs, "optimization.num_lr_warm_up_epoch", source) if warm_epochs else 0.0
    if scheduler == "":
        out["scheduler"] = None
    elif scheduler == "linear_decay_with_warm_up":
        if max_epoch is None or iters is None:
            raise ConfigError(f"{source}: scheduler_method linear_decay_with_warm_up needs optimization.max_epoch "
                              f"and optimization.num_iters_per_epoch (to know the number of updates)")
        total = max_epoch * iters // accum
        warm = int(warm_epochs * iters // accum)
        if warm >= total:
            raise ConfigError(f"{source}: {warm_epochs} warm-up epochs cover all {max_epoch} epochs")
        steps, lrs = ([0, warm, total], [0.0, lr, 0.0]) if warm > 0 else ([0, total], [lr, 0.0])
        out["scheduler"] = "piecewiselinearwarmuplr"
        out["scheduler_conf"] = {"warmup_steps_list": steps, "warmup_lr_list": lrs}
    else:
        if max_epoch is None:
            raise ConfigError(f"{source}: scheduler_method cosine_anneal needs optimization.max_epoch")
        out["scheduler"] = "cosineannealinglr"
        out["scheduler_conf"] = {"T_max": max_epoch}

    # student_model, general.temperature / teacher_layer_map, final_loss_coeff: the student spec
    spec = student_spec(demo, source)
    out["encoder"] = "asrc_wav2vec2"
    out["encoder_conf"] = {"init": str(student.get("student_init_model_path") or teacher), **spec.encoder_conf()}
    if ctc_only:
        out["model"] = "asrc_ctc"
        out["model_conf"] = {}
    else:
        out["model"] = "asrc_distill"
        out["model_conf"] = {"teacher": teacher, **spec.model_conf()}
    return out


def student_spec(demo: Mapping, source: str = "demo_config") -> StudentSpec:
    """The :class:`StudentSpec` of a demo config: ``student_model``, ``general.temperature`` and
    ``teacher_layer_map``, ``final_loss_coeff`` (the table in the module doc)."""
    _check_keys(demo, SCHEMA, "", source)
    kd = demo.get("knowledge_distillation") or {}
    general = kd.get("general") or {}
    student = kd.get("student_model") or {}
    if student.get("num_trans_layer_student_model") is None:
        raise ConfigError(f"{source}: knowledge_distillation.student_model.num_trans_layer_student_model is required")
    num_layers = _int(student["num_trans_layer_student_model"], "student_model.num_trans_layer_student_model",
                      source, 1)
    architecture: Dict[str, Any] = {}
    change_conv = student.get("change_conv_layers", False)
    if not isinstance(change_conv, bool):
        raise ConfigError(f"{source}: student_model.change_conv_layers={change_conv!r} must be true or false")
    if change_conv:
        architecture["conv_groups"] = _int(student.get("conv_groups", 1), "student_model.conv_groups", source, 1)
    elif student.get("conv_groups") not in (None, 1):
        logger.info("%s: change_conv_layers is false: conv_groups=%s ignored (teacher's front end)",
                    source, student.get("conv_groups"))
    layer_init = student.get("student_trans_layer_init_method", "every_k")
    if isinstance(layer_init, (list, tuple)):
        layer_init = [_int(i, "student_model.student_trans_layer_init_method", source, 1) for i in layer_init]
    else:
        layer_init = str(layer_init)
    distill = {"loss_weights": kd.get("final_loss_coeff") or {},
               "temperature": general.get("temperature"),
               "teacher_layer_map": general.get("teacher_layer_map") or None}
    return StudentSpec.from_dict({"layers": {"num": num_layers, "select": layer_init},
                                  "architecture": architecture, "distill": distill},
                                 source=f"{source} (as a student spec)")


#: Command-line options that change the number of updates, and the demo keys they stand for: the
#: learning-rate schedule (its last step is the last update) is derived with them.
UPDATE_COUNT_OPTIONS = {"max_epoch": "max_epoch", "num_iters_per_epoch": "num_iters_per_epoch"}


def translate_file(path, ctc_only: bool = False, overrides: Mapping[str, Any] = None) -> Dict[str, Any]:
    """:func:`translate` of the file ``path``; ``overrides`` (``max_epoch``, ``num_iters_per_epoch``
    given on the command line) replace the file's before the schedule is derived, so that
    ``--max_epoch 12`` stretches the warm-up and decay over the 12 epochs rather than leaving
    the learning rate at 0 after the file's last epoch."""
    demo = read_demo_config(path)
    if overrides:
        unknown = sorted(set(overrides) - set(UPDATE_COUNT_OPTIONS))
        if unknown:
            raise ValueError(f"not update-count options: {unknown}")
        kd = dict(demo.get("knowledge_distillation") or {})
        optimization = dict(kd.get("optimization") or {})
        optimization.update({UPDATE_COUNT_OPTIONS[k]: v for k, v in overrides.items()})
        warm, epochs = optimization.get("num_lr_warm_up_epoch"), optimization.get("max_epoch")
        if isinstance(warm, (int, float)) and isinstance(epochs, int) and warm >= epochs > 0:
            # a short run asked for on the command line (e.g. --max_epoch 1 for a smoke test):
            # warm up over its first half rather than refuse the file's warm-up
            logger.info("%s: --max_epoch %d leaves no room for %s warm-up epochs: warming up over %g",
                        path, epochs, warm, epochs / 2)
            optimization["num_lr_warm_up_epoch"] = epochs / 2
        kd["optimization"] = optimization
        demo = {**demo, "knowledge_distillation": kd}
    return translate(demo, ctc_only=ctc_only, source=str(path))
