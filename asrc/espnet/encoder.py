"""espnet2 encoder for asrc's wav2vec 2.0 models (``--encoder asrc_wav2vec2``).

The encoder owns a whole :class:`asrc.models.Wav2Vec2CTC`, CTC head included, so that the
head of a converted teacher keeps working and the trained model exports as an asrc model
directory. It reads the raw 16 kHz waveform (``--input_size 1 --normalize none``).

``encoder_conf`` (``init``, ``layer_init``, ``conv_init`` and ``config`` are what a student spec
gives, :func:`asrc.espnet.task.apply_student_spec`):

``config``
    :class:`asrc.models.Wav2Vec2Config` keys. Without ``init`` the full architecture (missing
    keys take the dataclass defaults, i.e. wav2vec2-base); with ``init`` changes on top of the
    initial model's config.
``init``
    An asrc model directory to start from (``config.yaml`` + ``model.pth`` + ``tokens.txt``).
``layer_init``
    ``null``: load ``init`` as it is (fine-tuning); ``config`` may then only change
    regularisation (dropouts, layer drop, masks). Otherwise a student is built from ``init``
    with :func:`asrc.models.student.build_student` and this layer initialisation
    (``every_k``, ``first_k``, ``last_k`` or a list of 1-based teacher layers); ``config``
    gives the student's architecture (e.g. ``{num_layers: 4, conv_groups: 2}``).
``conv_init``
    With ``layer_init``: how grouped/shared CNN kernels are derived from the teacher's
    (``lstsq``, the default, ``energy`` or ``block_diagonal``; :mod:`asrc.models.student`).
``calibration``
    With ``layer_init``: a Kaldi-style data directory whose speech (up to 16 utterances, 120 s,
    spread over ``wav.scp``) fits the student's grouped/shared CNN kernels to the teacher's
    (:func:`asrc.models.student.build_student`); ``asrc-train`` sets it to ``--train_data_dir``
    unless given. ``null``: pink noise, which fits speech far worse (asrc.models.student).
``freeze_feature_updates``
    For this many optimizer updates the CNN feature extractor gets no gradient (its output is
    detached; fairseq's ``feature_grad_mult = 0``, then trained normally). Updates are counted
    by a hook that :class:`asrc.espnet.task.AsrcASRTask` puts on the optimizer; the count is a
    buffer of the encoder, so it survives resuming.
``mask_after_updates``
    The wav2vec 2.0 fine-tuning masks (``mask_time_*``, ``mask_channel_*`` of the config) are
    applied only from this optimizer update on (default 0: from the start). Masks slow down the
    first epochs of a small model trained on a CPU and pay back later against over-fitting
    (egs/an4/RESULTS.md); the same update counter as ``freeze_feature_updates``.

In training mode LayerDrop (``layer_drop``) and, see above, the masks of the config are applied.

Quantization-aware training is not an ``encoder_conf`` key but the task's ``qat`` section:
:meth:`AsrcWav2Vec2Encoder.enable_qat` (called by :class:`asrc.espnet.task.AsrcASRTask`)
swaps in fake-quantized modules (:mod:`asrc.quant.qat`), active from update
``qat.start_updates`` of the same counter on.
"""

import logging
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import Tensor

from asrc.core.tables import read_tokens
from asrc.errors import ConfigError
from asrc.models import EncoderOutput, Wav2Vec2Config, Wav2Vec2CTC, load, load_config
from asrc.models.io import QUANT_NAME, TOKENS_NAME, is_model_dir, load_state_dict_strict
from asrc.models.student_spec import CONV_INITS

__all__ = ["AsrcWav2Vec2Encoder", "REGULARISATION_KEYS", "check_encoder_conf", "resolve_encoder_config"]

logger = logging.getLogger(__name__)

#: ``every_k``, ``first_k``, ``last_k`` or a list of 1-based teacher layers (asrc.models.student).
LayerInit = Optional[Union[str, List[int]]]

#: Config keys that change no parameter: the only ones a fine-tuning run may change.
REGULARISATION_KEYS = frozenset({
    "dropout", "attention_dropout", "activation_dropout", "feature_dropout", "final_dropout", "layer_drop",
    "mask_time_prob", "mask_time_length", "mask_channel_prob", "mask_channel_length",
})


def _check_init_dir(init) -> None:
    if not is_model_dir(init):
        where = ""
        if not Path(init).is_absolute():
            # config.yaml of an experiment keeps the path as given, relative to the recipe folder.
            where = (f"; the path is relative to the current directory {Path.cwd()} (tried "
                     f"{Path(init).absolute()}): use an ESPnet experiment from its recipe folder, as its "
                     f"other relative paths (token list, data, stats) are, or give an absolute path")
        raise FileNotFoundError(f"encoder_conf.init: {init} is not an asrc model directory "
                                f"(needs config.yaml and model.pth){where}")
    if (Path(init) / QUANT_NAME).is_file():
        raise ConfigError(f"encoder_conf.init: {init} is a quantized model; training needs a float model")


def _is_layer_init(v) -> bool:
    return v is None or isinstance(v, str) or (isinstance(v, list) and all(type(x) is int for x in v))


# encoder_conf keys: (check of the value, what it must be).
ENCODER_CONF = {
    "config": (lambda v: v is None or isinstance(v, dict), "a mapping of Wav2Vec2Config keys"),
    "init": (lambda v: v is None or isinstance(v, (str, Path)), "a model directory"),
    "layer_init": (_is_layer_init, "every_k, first_k, last_k or a list of teacher layers"),
    "freeze_feature_updates": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
    "mask_after_updates": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
    "calibration": (lambda v: v is None or isinstance(v, (str, Path)), "a data directory"),
    "conv_init": (lambda v: v in CONV_INITS, f"one of {', '.join(CONV_INITS)}"),
}


def check_encoder_conf(encoder_conf: dict) -> None:
    """A :class:`ConfigError` naming every unknown key and every value of the wrong kind."""
    unknown = sorted(k for k in encoder_conf if k not in ENCODER_CONF)
    if unknown:
        raise ConfigError(f"unknown encoder_conf keys {unknown} (known: {list(ENCODER_CONF)})")
    wrong = [f"encoder_conf.{k}={v!r} must be {ENCODER_CONF[k][1]}" for k, v in encoder_conf.items()
             if not ENCODER_CONF[k][0](v)]
    if wrong:
        raise ConfigError("; ".join(wrong))


def resolve_encoder_config(config: Optional[dict] = None, init: Optional[str] = None,
                           layer_init: LayerInit = None) -> Wav2Vec2Config:
    """The full :class:`Wav2Vec2Config` that ``encoder_conf`` describes (see the module doc)."""
    config = dict(config or {})
    if init is None:
        if layer_init is not None:
            raise ConfigError(f"encoder_conf.layer_init={layer_init!r} needs encoder_conf.init (the model to take layers from)")
        return Wav2Vec2Config.from_dict(config, source="encoder_conf.config")
    _check_init_dir(init)
    base = load_config(init).to_dict()
    if layer_init is None:
        changed = sorted(k for k, v in config.items() if k in base and base[k] != v and k not in REGULARISATION_KEYS)
        if changed:
            raise ConfigError(
                f"encoder_conf.config changes {changed} of {init}, which would not fit its weights; "
                f"without encoder_conf.layer_init only {sorted(REGULARISATION_KEYS)} may change "
                f"(set layer_init, e.g. every_k, to build a different student from it)")
    return Wav2Vec2Config.from_dict({**base, **config}, source="encoder_conf.config")


class AsrcWav2Vec2Encoder(AbsEncoder):
    """Raw waveform ``[batch, sample]`` (or ``[batch, sample, 1]``) -> hidden states ``[batch, frame, embed_dim]``."""

    def __init__(self, input_size: int = 1, config: Optional[dict] = None, init: Optional[str] = None,
                 layer_init: LayerInit = None, freeze_feature_updates: int = 0, mask_after_updates: int = 0,
                 calibration: Optional[str] = None, conv_init: str = CONV_INITS[0], **unknown):
        super().__init__()
        if input_size != 1:
            raise ConfigError(f"asrc_wav2vec2 reads the raw waveform: set --input_size 1 --normalize none "
                              f"(got input_size={input_size})")
        # ESPnet passes encoder_conf as keywords: a misspelt key lands in ``unknown``, not in a TypeError.
        check_encoder_conf(dict(config=config, init=init, layer_init=layer_init,
                                freeze_feature_updates=freeze_feature_updates, mask_after_updates=mask_after_updates,
                                calibration=calibration, conv_init=conv_init, **unknown))
        for key, value, default in (("calibration", calibration, None), ("conv_init", conv_init, CONV_INITS[0])):
            if value != default and layer_init is None:
                raise ConfigError(f"encoder_conf.{key}={value!r} is only used to build a student "
                                  f"(encoder_conf.layer_init)")
        resolved = resolve_encoder_config(config, init, layer_init)
        #: Tokens of the initial model (None when built from scratch); the ESPnet model checks them.
        self.init_tokens = None
        #: The student's :class:`asrc.models.student.InitReport` when built with ``layer_init``.
        self.init_report = None
        self.init_path = None if init is None else str(init)
        if init is None:
            self.model = Wav2Vec2CTC(resolved)
        else:
            tokens_path = Path(init) / TOKENS_NAME
            self.init_tokens = read_tokens(tokens_path) if tokens_path.is_file() else None
            source = load(init)
            if layer_init is None:
                self.model = Wav2Vec2CTC(resolved, source.tokens)
                load_state_dict_strict(self.model, source.state_dict(), f"encoder_conf.init={init}")
            else:
                self.model, self.init_report = _build_student(source, resolved, layer_init, init, calibration,
                                                              conv_init)
            del source
        if self.model.config.mask_time_prob == 0:
            # Only time masks use it: a trainable parameter that never gets a gradient stalls DDP.
            self.model.mask_emb.requires_grad_(False)
        self.freeze_feature_updates = int(freeze_feature_updates)
        self.mask_after_updates = int(mask_after_updates)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        #: :class:`asrc.quant.qat.QATConfig` once :meth:`enable_qat` ran.
        self.qat = None
        self.model.feature_extractor.register_forward_hook(self._maybe_detach_features)

    @property
    def config(self) -> Wav2Vec2Config:
        return self.model.config

    def output_size(self) -> int:
        return self.model.config.embed_dim

    def features_frozen(self) -> bool:
        # The cheap tests first: reading the counter synchronises with the device.
        return self.freeze_feature_updates > 0 and self.training and int(self.num_updates) < self.freeze_feature_updates

    def masks_active(self) -> bool:
        """Whether the fine-tuning masks are applied to the next training batch."""
        if not self.training:
            return False
        return self.mask_after_updates == 0 or int(self.num_updates) >= self.mask_after_updates

    def _maybe_detach_features(self, module, inputs, output):
        if self.features_frozen():
            features, lengths = output
            return features.detach(), lengths
        return None

    def enable_qat(self, config) -> None:
        """Fake-quantize the model (:func:`asrc.quant.qat.prepare_qat`) from update ``config.start_updates`` on."""
        from asrc.quant.qat import prepare_qat

        prepare_qat(self.model, config)
        self.qat = config

    def qat_active(self) -> bool:
        return self.qat is not None and int(self.num_updates) >= self.qat.start_updates

    def on_optimizer_step(self) -> None:
        """Count one optimizer update (called by the hook :class:`AsrcASRTask` installs)."""
        self.num_updates += 1

    def encode(self, speech: Tensor, speech_lengths: Tensor, output_hidden_states: bool = False,
               return_features: bool = False) -> EncoderOutput:
        """Everything but the CTC head; masks and LayerDrop in training mode."""
        if self.qat is not None:
            from asrc.quant.qat import set_fake_quant

            set_fake_quant(self.model, self.qat_active())
        return self.model.encode(as_waveform(speech), speech_lengths, output_hidden_states=output_hidden_states,
                                 return_features=return_features, apply_mask=self.masks_active())

    def ctc_logits(self, x: Tensor) -> Tensor:
        """The model's own CTC head: ``[batch, frame, embed_dim]`` -> ``[batch, frame, vocab]``."""
        return self.model.ctc_head(self.model.final_dropout(x))

    def forward(self, xs_pad: Tensor, ilens: Tensor, prev_states: Tensor = None) -> Tuple[Tensor, Tensor, None]:
        out = self.encode(xs_pad, ilens)
        return out.x, out.lengths, None


def as_waveform(speech: Tensor) -> Tensor:
    """ESPnet gives raw audio as ``[batch, sample]`` or ``[batch, sample, 1]``; asrc wants the former."""
    if speech.dim() == 3 and speech.shape[-1] == 1:
        speech = speech.squeeze(-1)
    if speech.dim() == 3:
        # Multi-channel audio: [batch, sample, channel] (a [sample, channel] array, as soundfile
        # reads stereo) or [batch, channel, sample] (a [channel, sample] array, as torchaudio does).
        _, a, b = speech.shape
        layout, channels = (("[batch, sample, channel]", b) if 2 <= b <= 8 < a else
                            ("[batch, channel, sample]", a) if 2 <= a <= 8 < b else (None, 0))
        if layout is not None:
            raise ValueError(f"got shape {tuple(speech.shape)}: this looks like multi-channel audio ({layout}, "
                             f"{channels} channels), but the model reads mono audio: mix it down first "
                             f"(e.g. the mean over the channel axis)")
    if speech.dim() != 2:
        raise ValueError(f"expected a raw waveform [batch, sample] (set --input_size 1 and no frontend), "
                         f"got shape {tuple(speech.shape)}")
    return speech


def _calibration_speech(data_dir: str) -> Tuple[Tensor, Tensor, str]:
    """Up to 16 utterances (120 s) spread over ``data_dir``'s wav.scp, padded: ``(wav, lengths, name)``."""
    from asrc.core.batching import pad_waveforms
    from asrc.core.audio import read_waveforms

    try:
        waveforms, info = read_waveforms(data_dir, max_utterances=16, max_seconds=120.0)
    except (OSError, ValueError) as e:
        raise ConfigError(f"encoder_conf.calibration: {e}") from e
    wav, lengths = pad_waveforms(waveforms)
    return wav, lengths, f"{info['utterances']} utterances ({info['seconds']} s) of {data_dir}"


def _build_student(source: Wav2Vec2CTC, config: Wav2Vec2Config, layer_init: str, init,
                   calibration: Optional[str] = None, conv_init: str = CONV_INITS[0]):
    from asrc.models.student import build_student

    wav = lengths = name = None
    if calibration is not None:
        wav, lengths, name = _calibration_speech(calibration)
    try:
        student, report = build_student(source, config, layer_init=layer_init, conv_init=conv_init, calibration=wav,
                                        calibration_lengths=lengths, calibration_name=name)
    except ValueError as e:
        raise ConfigError(f"encoder_conf: cannot build the student from {init}: {e}") from e
    if student.config.to_dict() != config.to_dict():
        raise ConfigError(f"build_student({init}) returned a config different from encoder_conf.config")
    logger.info("student initialised from %s:\n%s", init, report.format())
    return student, report
