"""``AsrcASRTask``: espnet2's ASR task with asrc's defaults and data directories.

It is :class:`espnet2.tasks.asr.ASRTask` (same options, same trainer, same checkpoints) with:

- defaults for asrc's raw-waveform models (:data:`ASRC_DEFAULTS`), which a ``--config`` YAML
  and then command-line flags override as usual;
- ``--student``: a student spec (:mod:`asrc.models.student_spec`; a YAML file, or a mapping
  under ``student:`` in the ``--config`` YAML), expanded into ``encoder_conf`` and (for
  ``asrc_distill``) ``model_conf`` by :func:`apply_student_spec`;
- ``--train_data_dir`` / ``--valid_data_dir``: Kaldi-style data directories, expanded into
  ESPnet's ``--*_data_path_and_name_and_type`` and a shape file written under
  ``<output_dir>/shapes/`` (:mod:`asrc.espnet.data`; no ``collect_stats`` pass);
- completion before anything is built (:func:`complete_args`): the token list defaults to the
  teacher's (distillation) or the initial model's ``tokens.txt``; the encoder config is
  resolved to the full :class:`Wav2Vec2Config` and written back into ``encoder_conf.config``,
  so the dumped ``config.yaml`` describes the model without reference to other files; a
  student (``encoder_conf.layer_init``) fits its front end on ``--train_data_dir``'s speech
  (``encoder_conf.calibration``) unless told otherwise; with
  letter tokens ``|`` is the space symbol (``HELLO WORLD`` -> ``H E L L O | W O R L D``);
- ``--prune`` (a ``prune:`` section of the YAML, :class:`asrc.prune.spec.PruneSpec`): structured
  pruning during distillation (``--model asrc_distill``): hard-concrete gates on the student and
  a Lagrangian on their expected cost (:meth:`asrc.espnet.models.AsrcDistillModel.enable_pruning`);
  the gates and multipliers get their own optimizer parameter group (constant learning rate
  ``prune.reg_lr`` whatever the scheduler, no weight decay);
- an optimizer hook that counts updates for ``encoder_conf.freeze_feature_updates`` and ``qat``;
- ``--qat`` (a ``qat:`` section in the YAML): quantization-aware training of the encoder's
  model, parsed by :class:`asrc.quant.qat.QATConfig` (``start_updates``, ``activation_bits``,
  ``range_momentum``, ``range_percentile``); ``--export_model_dir`` then writes the int8 model (``mode: qat``);
- under DDP, ``--unused_parameters true`` when LayerDrop or feature freezing leave
  parameters without gradient in some steps;
- logging into ``train.log`` also from the processes ESPnet spawns for multi-GPU training;
- a clear error instead of a crash when ``checkpoint.pth`` was truncated by a kill during
  its (in-place) write;
- a clear error instead of a silent mix when a run is resumed with options that change what is
  trained (:data:`RESUME_KEYS`, :func:`check_resume_config`): ESPnet would restore the weights,
  the optimizer and the scheduler from ``checkpoint.pth`` and overwrite ``config.yaml`` with the
  new options.
"""

import argparse
import logging
import zipfile
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import yaml

from espnet2.tasks.asr import ASRTask
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str_or_none
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from asrc.core.constants import WORD_BOUNDARY
from asrc.core.tables import read_tokens
from asrc.errors import CheckpointError, ConfigError
from asrc.espnet.data import TEXT_NAME, untranscribed, write_shape_file, write_training_text
from asrc.espnet.encoder import AsrcWav2Vec2Encoder, resolve_encoder_config
from asrc.espnet.logs import logging_to
from asrc.models import load_config
from asrc.models.io import TOKENS_NAME, is_model_dir
from asrc.models.student_spec import read_student_spec
from asrc.prune.spec import PruneSpec
from asrc.quant.qat import QATConfig

__all__ = ["ASRC_DEFAULTS", "RESUME_KEYS", "AsrcASRTask", "apply_student_spec", "check_resume_config", "complete_args"]

logger = logging.getLogger(__name__)

#: Defaults that differ from ESPnet's ASR task.
ASRC_DEFAULTS = dict(
    encoder="asrc_wav2vec2",
    model="asrc_ctc",
    input_size=1,
    normalize=None,
    specaug=None,
    # ESPnet's preprocessor + a NaN/Inf check naming the utterance + silence/gain augmentation
    preprocessor="asrc",
    token_type="char",
    resume=True,
    # Batches of up to 200 s of padded audio: wav2vec 2.0 fine-tuning's 3.2M samples per GPU.
    batch_type="numel",
    batch_bins=3_200_000,
    optim="adamw",
    optim_conf={"lr": 5.0e-5},
    best_model_criterion=[["valid", "loss", "min"], ["valid", "cer", "min"]],
    # ESPnet's attention plots find no ESPnet attention modules in asrc's encoder.
    num_att_plot=0,
)

#: The options that a resumed run must share with the run it resumes (:func:`check_resume_config`),
#: compared with ``<output_dir>/config.yaml`` once asrc has completed them: those that say what is
#: trained. Resuming restores the weights, the optimizer's and the scheduler's state from
#: ``checkpoint.pth``, so a new value of one of these would be ignored (``optim_conf.lr``, a
#: ``scheduler_conf`` whose state comes back from the checkpoint), change the objective or the data
#: halfway (``model_conf``, the data lists), or not fit the saved weights (``encoder_conf``); and
#: ``config.yaml``, which ESPnet rewrites on every run, would describe a model that was not trained.
#: ``seed`` too: it draws the initial weights and each epoch's batch order, and a rerun with another
#: seed in the same directory is a forgotten ``--tag``, not a resume. The token list is compared by
#: its tokens (a file name in the arguments, the list in ``config.yaml``).
#: Not compared, as changing them is what a rerun is for or does not change the model: how long to
#: train and when to stop (``max_epoch``: extending a finished run; ``num_iters_per_epoch``,
#: ``patience``, ``early_stopping_criterion``; a schedule derived from them shows in
#: ``scheduler_conf``), which checkpoints are kept and averaged (``best_model_criterion``,
#: ``keep_nbest_models``, ``nbest_averaging_interval``), the hardware and processes (``ngpu``,
#: ``num_workers``, ``dist_*``, ``multiprocessing_distributed``, ``use_amp``, ``use_tf32``,
#: ``cudnn_*``, DDP options), logging and plots (``log_*``, ``use_tensorboard``, ``use_wandb``, ...),
#: validation batching (``valid_batch_*``), caches, ``resume``, ``print_config``, ``dry_run``, and paths
#: that are not the data: ``output_dir`` (``--exp_dir``/``--tag``), ``config`` (a config file's
#: contents are compared through the options it sets), the shape files (derived from the data).
#: ``--train_data_dir``/``--valid_data_dir`` and ``--student`` are compared through what they expand
#: into (the data lists; ``encoder_conf``, ``model_conf``). The knobs of ESPnet's chunk and category
#: iterators are not compared (``iterator_type`` is; asrc trains with the sequence iterator).
RESUME_KEYS = (
    # the model
    "model", "model_conf", "encoder", "encoder_conf", "frontend", "frontend_conf", "specaug", "specaug_conf",
    "normalize", "normalize_conf", "preencoder", "preencoder_conf", "postencoder", "postencoder_conf",
    "decoder", "decoder_conf", "ctc_conf", "joint_net_conf", "aux_ctc_tasks", "input_size",
    "token_list", "token_type", "bpemodel", "prune", "qat", "use_adapter", "adapter", "adapter_conf",
    # its initialisation, and which parameters train
    "init", "init_param", "ignore_init_mismatch", "freeze_param", "seed",
    # the data and its preprocessing
    "train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
    "use_preprocessor", "preprocessor", "preprocessor_conf", "non_linguistic_symbols", "cleaner", "g2p",
    "speech_volume_normalize", "rir_scp", "rir_apply_prob", "noise_scp", "noise_apply_prob", "noise_db_range",
    "short_noise_thres", "use_lang_prompt", "use_nlp_prompt",
    # batching: what one update averages over
    "iterator_type", "batch_type", "batch_size", "batch_bins", "max_batch_size", "min_batch_size", "fold_length",
    # the optimisation
    "optim", "optim_conf", "scheduler", "scheduler_conf", "val_scheduler_criterion", "accum_grad",
    "grad_clip", "grad_clip_type", "grad_noise", "exclude_weight_decay", "exclude_weight_decay_conf",
    "train_dtype",
)



class AsrcASRTask(ASRTask):
    """ESPnet's ASR task for asrc's wav2vec 2.0 models (see the module doc)."""

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="asrc data directories")
        for mode in ("train", "valid"):
            group.add_argument(
                f"--{mode}_data_dir", type=str_or_none, default=None,
                help=f"Kaldi-style {mode} data directory (wav.scp, text, utt2spk, utt2num_samples); replaces "
                     f"--{mode}_data_path_and_name_and_type and --{mode}_shape_file",
            )
        group.add_argument(
            "--student", type=str_or_none, default=None,
            help="student spec YAML (asrc.models.student_spec): layers, architecture, initialisation and "
                 "distillation of the student; fills in encoder_conf and model_conf (give each setting once)",
        )
        group = parser.add_argument_group(description="asrc structured pruning")
        group.add_argument("--prune", action=NestedDictAction, default=None,
                           help="structured pruning during distillation: asrc.prune.spec.PruneSpec keys "
                                "(structures, target_sparsity, cost, cost_seconds, warmup_updates, reg_lr, "
                                "init_drop_rate); needs --model asrc_distill")
        parser.add_argument_group(description="asrc quantization-aware training").add_argument(
            "--qat", action=NestedDictAction, default=None,
            help="quantization-aware training of the asrc model (asrc.quant.qat.QATConfig keys: start_updates, "
                 "activation_bits, range_momentum, range_percentile); --export_model_dir then writes its int8 model")

    @classmethod
    def get_parser(cls):
        parser = super().get_parser()
        parser.set_defaults(**ASRC_DEFAULTS)
        return parser

    @classmethod
    def parse_args(cls, cmd: Optional[Sequence[str]] = None, defaults: Optional[dict] = None) -> argparse.Namespace:
        """Parse ``cmd`` over asrc's defaults, then ``defaults`` (e.g. a translated demo config)."""
        parser = cls.get_parser()
        if defaults:
            known = {a.dest for a in parser._actions}
            unknown = sorted(set(defaults) - known)
            if unknown:
                raise ConfigError(f"options {unknown} do not exist in asrc-train")
            parser.set_defaults(**defaults)
        return parser.parse_args(cmd)

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd: Optional[Sequence[str]] = None,
             completed: Optional[Callable[[], None]] = None):
        """ESPnet's main on the completed ``args``; ``completed`` is called once they are (the
        resume checks passed), before ESPnet starts."""
        if args is None:
            args = cls.parse_args(cmd)
        if not args.print_config:
            complete_args(args)
            if completed is not None:
                completed()
        super().main(args=args)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if logging.getLogger().handlers:  # asrc-train set up logging in this process
            return super().main_worker(args)
        # A process ESPnet spawned (one per GPU): log as asrc-train does, rank 0 into train.log.
        with logging_to(args.output_dir, args.log_level, process_rank=args.dist_rank or 0):
            return super().main_worker(args)

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        model = super().build_model(args)
        if getattr(args, "prune", None) is not None:
            if not hasattr(model, "enable_pruning"):
                raise ConfigError(f"prune: needs --model asrc_distill, got --model {args.model}")
            model.enable_pruning(PruneSpec.from_dict(args.prune))
        encoders = [m for m in model.modules() if isinstance(m, AsrcWav2Vec2Encoder)]
        if getattr(args, "qat", None) is not None:
            qat = QATConfig.from_dict(args.qat)
            for e in encoders:
                e.enable_qat(qat)
            if getattr(model, "ctc", None) is not None and len(encoders) == 1:
                # ESPnet's CTC module shares the model's head, now its fake-quantized twin.
                model.ctc.ctc_lo = encoders[0].model.ctc_head
        needs_unused = any(e.config.layer_drop > 0 or e.freeze_feature_updates > 0 for e in encoders)
        if getattr(args, "distributed", False) and needs_unused and not args.unused_parameters:
            logger.info("LayerDrop / feature freezing skip parameters in some steps: setting --unused_parameters true")
            args.unused_parameters = True
        return model

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model):
        optimizers = super().build_optimizers(args, model)
        pruning = getattr(model, "pruning", None)
        if pruning is not None:
            _own_group(optimizers[0], list(pruning.parameters()), lr=pruning.spec.reg_lr)
        encoders = [m for m in model.modules() if isinstance(m, AsrcWav2Vec2Encoder)]
        if encoders:
            def count_update(optimizer, *unused):
                for e in encoders:
                    e.on_optimizer_step()

            # One optimizer step = one update; steps skipped for non-finite gradients are not counted.
            optimizers[0].register_step_post_hook(count_update)
        return optimizers


def _own_group(optimizer, params, lr: float) -> None:
    """Move ``params`` out of the optimizer's groups into a group of their own: constant ``lr``, no
    weight decay. ESPnet's schedulers set every group's lr (the piecewise-linear one even ignores
    the group's own); a hook puts this group's back before every step, so the gates follow the
    target ramp from the first update (what the scheduler set is what ESPnet logs as
    ``optim0_lr1``, not what was used)."""
    ids = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    optimizer.add_param_group({"params": params, "lr": lr, "weight_decay": 0.0})
    group = optimizer.param_groups[-1]

    def constant_lr(opt, *unused):
        group["lr"] = lr

    optimizer.register_step_pre_hook(constant_lr)


def _tokens_of(model_dir) -> Optional[str]:
    path = Path(model_dir) / TOKENS_NAME
    return str(path) if path.is_file() else None


def check_resume_state(args: argparse.Namespace) -> None:
    """Refuse to resume from a truncated ``checkpoint.pth``.

    ESPnet writes it in place at the end of every epoch; a job killed during that write leaves
    a truncated file, on which resuming would crash deep inside ``torch.load``.
    """
    path = Path(args.output_dir or ".") / "checkpoint.pth"
    if not (args.resume and path.is_file()):
        return
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        bad = str(e)
    if bad is not None:
        raise CheckpointError(f"{path} is damaged ({bad}; the job was probably killed while saving it). "
                              f"Move it away to restart from the beginning (the weights of finished epochs "
                              f"are in <n>epoch.pth, usable with --init_param)")


_UNSET = object()  # an option that the old config.yaml does not have
_MAX_SHOWN = 8  # differences named in the message
_SHORT = 60  # characters of a value shown


def _token_list_as_built(token_list) -> Any:
    """The token list as ESPnet's ``ASRTask.build_model`` leaves it in the arguments it dumps: a
    file read into its lines (asrc's models are CTC: no transducer blanks are added)."""
    if isinstance(token_list, str) and Path(token_list).is_file():
        with open(token_list, encoding="utf-8") as f:
            token_list = [line.rstrip() for line in f]
    return token_list


def _as_dumped(options: dict) -> dict:
    """``options`` as they read back from ESPnet's ``config.yaml`` (tuples become lists, ...)."""
    try:
        return yaml.safe_load(yaml_no_alias_safe_dump(options))
    except yaml.YAMLError:  # ESPnet could not dump them either; compare as they are
        return dict(options)


def _differences(old, new, name: str) -> List[Tuple[str, Any, Any]]:
    """``(option, old, new)`` for each difference, naming keys inside mappings (``optim_conf.lr``) and
    items of lists of the same length (``token_list[5]``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(old) + [k for k in new if k not in old]:
            found += _differences(old.get(key, _UNSET), new.get(key, _UNSET), f"{name}.{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _differences(a, b, f"{name}[{i}]")]
    return [] if old == new else [(name, old, new)]


def _short(value) -> str:
    if value is _UNSET:
        return "(not set)"
    text = repr(value)
    if len(text) <= _SHORT:
        return text
    if isinstance(value, (list, tuple, dict)):
        return f"{text[:_SHORT - 20]}... ({len(value)} items)"
    return f"{text[:15]}...{text[15 - _SHORT:]}"  # a path's end tells it from another


def check_resume_config(args: argparse.Namespace) -> None:
    """Refuse to resume a run with options that change what is trained (:data:`RESUME_KEYS`).

    With ``--resume true`` and ``<output_dir>/checkpoint.pth``, ESPnet resumes whatever the
    options: the weights, optimizer and scheduler come from the checkpoint, and ``config.yaml`` (the
    options the run was started with) is overwritten with the new ones. ``args`` must be completed
    (:func:`complete_args`), as they were when ESPnet dumped ``config.yaml``. An option that the old
    ``config.yaml`` lacks (written by an older version) counts as unset (None).
    """
    output_dir = Path(args.output_dir or ".")
    path = output_dir / "config.yaml"
    if not (args.resume and (output_dir / "checkpoint.pth").is_file() and path.is_file()):
        return
    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        old = e
    if not isinstance(old, dict):  # e.g. emptied by a kill while ESPnet rewrote it
        logger.warning("%s is unreadable (%s): resuming without comparing the options with it", path,
                       old if isinstance(old, Exception) else "not a mapping")
        return
    new = {k: getattr(args, k, None) for k in RESUME_KEYS}
    new["token_list"] = _token_list_as_built(new["token_list"])
    if args.input_size is not None:  # ESPnet's build_model drops the front end of features read as they are
        new["frontend"], new["frontend_conf"] = None, {}
    new = _as_dumped(new)
    found = []
    for key in RESUME_KEYS:
        before = old.get(key)
        if key == "token_list":
            before = _token_list_as_built(before)
        found += _differences(before, new[key], key)
    if not found:
        return
    shown = "; ".join(f"{name}: {_short(a)} -> {_short(b)}" for name, a, b in found[:_MAX_SHOWN])
    if len(found) > _MAX_SHOWN:
        shown += f"; and {len(found) - _MAX_SHOWN} more"
    raise ConfigError(
        f"{output_dir} holds a run started with other options, which resuming it would mix with the new ones "
        f"(the weights, optimizer and scheduler come from its checkpoint.pth): {shown}. To go on with that run, "
        f"give the options it was started with again (they are in {path}); to train with the new ones, use "
        f"another --output_dir or --exp_dir/--tag, or move {output_dir} away, or pass --resume false to start "
        f"over in {output_dir} (overwriting its checkpoints)")


def _merge_once(target: dict, values: dict, where: str) -> None:
    """``target.update(values)``, refusing a key that both set to different values."""
    clash = sorted(k for k, v in values.items() if k in target and target[k] != v)
    if clash:
        raise ConfigError(f"--student sets {[f'{where}.{k}' for k in clash]}, which are also set to other values "
                          f"in the config or on the command line: set each in one place")
    target.update(values)


def apply_student_spec(args: argparse.Namespace) -> None:
    """Expand ``args.student`` into ``encoder_conf`` and ``model_conf`` (then ``args.student`` is None,
    so the dumped ``config.yaml`` holds the expanded options and reads back alone).

    The spec's architecture changes apply to the config of ``encoder_conf.init`` (default: the
    teacher, ``model_conf.teacher``): with ``init.from: teacher`` the student is built from it
    (``encoder_conf.layer_init``); with ``random`` ``encoder_conf.init`` is a model made from the
    spec (asrc-frontend-init --student), which the encoder checks against the spec's
    architecture, or, when not given, the student starts from scratch. The ``distill:`` section is
    the ``model_conf`` of ``--model asrc_distill`` and unused by other models.
    """
    spec = read_student_spec(args.student, source="--student")
    if spec is None:
        return
    if args.encoder != "asrc_wav2vec2":
        raise ConfigError(f"--student describes an asrc_wav2vec2 student; --encoder is {args.encoder}")
    encoder_conf = dict(args.encoder_conf or {})
    model_conf = dict(args.model_conf or {})
    teacher = model_conf.get("teacher") if args.model == "asrc_distill" else None
    init = encoder_conf.get("init")
    base = init if init is not None else teacher
    if base is None:
        raise ConfigError("--student describes a student relative to its teacher: give model_conf.teacher "
                          "(--model asrc_distill) or encoder_conf.init")
    if not is_model_dir(base):
        raise FileNotFoundError(f"{base} is not an asrc model directory (needs config.yaml and model.pth)")
    base_config = load_config(base)
    changes = spec.encoder_conf(base_config)
    if spec.init_from == "teacher":
        encoder_conf["init"] = base
    elif init is None:  # a random student from scratch: its whole architecture
        changes["config"] = spec.student_config(base_config).to_dict()
    config = dict(encoder_conf.get("config") or {})
    _merge_once(config, changes.pop("config"), "encoder_conf.config")
    _merge_once(encoder_conf, changes, "encoder_conf")
    encoder_conf["config"] = config
    if args.model == "asrc_distill":
        _merge_once(model_conf, spec.model_conf(), "model_conf")
    elif spec.distill is not None:
        logger.info("--model %s: the student spec's distill section is not used", args.model)
    for name in ("prune", "qat"):  # sections registered by asrc.prune and asrc.quant
        if name in spec.sections:
            section = dict(getattr(args, name, None) or {})
            _merge_once(section, spec.sections[name].to_dict(), name)
            setattr(args, name, section)
    args.encoder_conf, args.model_conf, args.student = encoder_conf, model_conf, None


def complete_args(args: argparse.Namespace) -> None:
    """Fill in what asrc derives (token list, full encoder config, data files); see the module doc.

    A resumed run is checked first (:func:`check_resume_state`), then, once completed, compared with
    the options it was started with (:func:`check_resume_config`), before anything is written into
    the output directory (the shape files).
    """
    check_resume_state(args)
    writes = _complete(args)
    check_resume_config(args)
    for write in writes:
        write()


def _complete(args: argparse.Namespace) -> List[Callable[[], None]]:
    """:func:`complete_args` without the checks; returns the writes of the data files it names."""
    writes: List[Callable[[], None]] = []
    apply_student_spec(args)
    if getattr(args, "prune", None) is not None and getattr(args, "qat", None) is not None:
        raise ConfigError("prune: and qat: in one run are not supported (the int8 export would keep the unpruned "
                          "student): prune, export the dense model (--export_model_dir), then fine-tune it with qat:")
    if getattr(args, "prune", None) is not None:
        if args.model != "asrc_distill":
            raise ConfigError(f"prune: structured pruning runs with distillation; set --model asrc_distill "
                              f"(got {args.model})")
        args.prune = PruneSpec.from_dict(args.prune).to_dict()  # validated, complete in config.yaml
    if args.encoder != "asrc_wav2vec2":
        if getattr(args, "qat", None) is not None:
            raise ConfigError(f"qat: quantization-aware training needs --encoder asrc_wav2vec2, not {args.encoder}")
        return writes
    if getattr(args, "qat", None) is not None:
        QATConfig.from_dict(args.qat)  # a bad section fails here, before the data is read
    encoder_conf = dict(args.encoder_conf or {})
    init, layer_init = encoder_conf.get("init"), encoder_conf.get("layer_init")
    teacher = (args.model_conf or {}).get("teacher") if args.model == "asrc_distill" else None
    if teacher is not None and not is_model_dir(teacher):
        raise FileNotFoundError(f"model_conf.teacher: {teacher} is not an asrc model directory "
                                f"(needs config.yaml and model.pth)")

    if args.token_list is None:
        for source in (teacher, init):
            if source is not None and _tokens_of(source):
                args.token_list = _tokens_of(source)
                logger.info("--token_list not given: using %s", args.token_list)
                break
    tokens = None
    if isinstance(args.token_list, str):
        if not Path(args.token_list).is_file():
            raise FileNotFoundError(f"--token_list {args.token_list} not found")
        tokens = read_tokens(args.token_list)
    elif isinstance(args.token_list, (list, tuple)):
        tokens = list(args.token_list)

    config = dict(encoder_conf.get("config") or {})
    if init is None and tokens is not None:
        if "vocab_size" in config and config["vocab_size"] != len(tokens):
            raise ConfigError(f"encoder_conf.config.vocab_size={config['vocab_size']} but --token_list "
                              f"{args.token_list} has {len(tokens)} tokens")
        config["vocab_size"] = len(tokens)
    resolved = resolve_encoder_config(config, init, layer_init)
    encoder_conf["config"] = resolved.to_dict()
    if layer_init is not None and "calibration" not in encoder_conf and args.train_data_dir is not None:
        # The student's grouped/shared CNN kernels are fitted on training speech, not pink noise.
        encoder_conf["calibration"] = str(Path(args.train_data_dir).resolve())
    args.encoder_conf = encoder_conf

    if args.token_type == "char" and tokens is not None and WORD_BOUNDARY in tokens:
        args.preprocessor_conf = {"space_symbol": WORD_BOUNDARY, **(args.preprocessor_conf or {})}
    space_symbol = (args.preprocessor_conf or {}).get("space_symbol", "<space>")

    for mode in ("train", "valid"):
        data_dir = getattr(args, f"{mode}_data_dir")
        if data_dir is None:
            continue
        if getattr(args, f"{mode}_data_path_and_name_and_type") or getattr(args, f"{mode}_shape_file"):
            raise ConfigError(f"--{mode}_data_dir replaces --{mode}_data_path_and_name_and_type and "
                              f"--{mode}_shape_file: give one or the other")
        if args.output_dir is None:
            raise ConfigError("--output_dir is required")
        # Distillation also learns from untranscribed audio (teacher losses only, no CTC).
        missing = untranscribed(data_dir)
        if missing and (args.model != "asrc_distill" or mode == "valid"):
            raise ConfigError(f"--{mode}_data_dir {data_dir}: {missing} utterance(s) have no transcript in text; "
                              f"only distillation (--model asrc_distill) trains on untranscribed audio, and "
                              f"validation needs transcripts")
        out = Path(args.output_dir) / "shapes" / mode
        text = out / TEXT_NAME if missing else Path(data_dir) / "text"
        setattr(args, f"{mode}_data_path_and_name_and_type",
                [(str(Path(data_dir) / "wav.scp"), "speech", "sound"), (str(text), "text", "text")])

        def write(mode=mode, data_dir=data_dir, out=out, missing=missing, text=text):
            shape = write_shape_file(data_dir, out, resolved, tokens, args.token_type, space_symbol,
                                     untranscribed_ok=bool(missing))
            if missing:
                written = write_training_text(data_dir, out)
                assert written == text, (written, text)
                logger.info("%s: %d untranscribed utterance(s): teacher losses only", data_dir, missing)
            setattr(args, f"{mode}_shape_file", [str(shape)])

        writes.append(write)
    return writes
