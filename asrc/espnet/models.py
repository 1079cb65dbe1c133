"""espnet2 model classes (``--model asrc_ctc`` / ``--model asrc_distill``).

Both take the batch ESPnet's ASR data loader builds (``speech [batch, sample]``,
``speech_lengths``, ``text [batch, label]`` padded with -1, ``text_lengths``) and return
``(loss, stats, weight)``; ``stats`` go to the log and to ``tensorboard/`` one curve per key.
Neither uses ESPnet's frontend, normalisation, SpecAugment or decoder, and the CTC head is the
asrc model's own (ESPnet's ``CTC`` module is kept for ESPnet's inference tools, its linear layer
replaced by that head).

For those tools (``espnet2.bin.asr_inference``: ``Speech2Text`` and its CLI) the model names
its tokens in ESPnet's terms (:func:`espnet_token_list`): the letter word boundary ``|`` is
``<space>``, which the ``char`` tokenizer of ``Speech2Text`` turns into a space (it ignores
``preprocessor_conf.space_symbol``); and the end of a hypothesis is ``<sos/eos>`` or, in
fairseq's letter list, ``</s>``, never a letter (ESPnet's default, the last token, is ``Z``,
which its CTC prefix search could then never output). Training reads neither: the data
pipeline tokenises with ``--token_list`` and ``preprocessor_conf.space_symbol``.

``asrc_ctc``: CTC on the labels (:func:`asrc.distill.losses.ctc_loss`).

``asrc_distill`` (``model_conf``; ``temperature``, ``loss_weights`` and ``teacher_layer_map`` are
the ``distill:`` section of a student spec, :class:`asrc.models.student_spec.DistillSpec`, which
``--student`` fills in):

``teacher``
    asrc model directory of the teacher. It is frozen, in eval mode, run under ``no_grad``, and
    kept out of the module tree: not in checkpoints, not given to the optimizer or DDP.
``temperature``
    of ``kd_loss``.
``loss_weights``
    ``{kd_loss, student_loss, hidden_loss, cos_embed_loss, features_pen}`` (missing = 0, except
    ``kd_loss`` = 1); see :mod:`asrc.distill.losses`.
``teacher_layer_map``
    ``{student_state: teacher_state}`` for ``hidden_loss``. Default: when the student was built
    from the teacher (``encoder_conf.layer_init``), the pairs its initialisation copied
    (``InitReport.hidden_state_pairs``); otherwise the same relative depth.

With a ``prune:`` section in the config (:class:`asrc.prune.spec.PruneSpec`, set up by
:meth:`AsrcDistillModel.enable_pruning`) the student runs under hard-concrete gates (sampled in
training, deterministic in validation; :mod:`asrc.prune.masks`) and the training loss adds the
Lagrangian on their expected cost (:mod:`asrc.prune.lagrangian`). Logged with it:
``expected_params`` (and ``expected_macs`` with ``cost: macs``), ``expected_sparsity``,
``target_sparsity``, ``lambda1``, ``lambda2``, ``lagrangian`` and ``kept_<structure>`` (expected
kept fraction of the conv channels, heads, ...). The validation loss is the distillation loss
alone, of the student under its deterministic gates.

The training data of a distillation may hold untranscribed audio (utterances left out of
``text``, see :mod:`asrc.espnet.data`): those get every teacher loss and no CTC
(:func:`transcribed_ctc_loss`), as *Shrinking Bigfoot* distilled from posteriors alone.

Every term of the objective is logged, weighted or not, so a CTC-only run and a distillation
run can be compared on the same curves. In validation the greedy CTC token error rate of the
student (``cer``; for letter tokens the character error rate, ``|`` counted as the space) and
of the teacher (``cer_teacher``) are logged too.
"""

import contextlib
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable
from torch import Tensor

from asrc.core.constants import BLANK_ID, SOS_EOS, WORD_BOUNDARY
from asrc.distill.losses import HiddenStatePredictor, cos_embed_loss, ctc_loss, features_pen, kd_loss
from asrc.distill.pairing import check_same_frames, check_same_tokens, resolve_layer_map
from asrc.errors import ConfigError
from asrc.espnet.encoder import AsrcWav2Vec2Encoder, as_waveform
from asrc.models import Wav2Vec2CTC, load
from asrc.models.io import QUANT_NAME, TOKENS_NAME, is_model_dir
from asrc.models.student_spec import DistillSpec
from asrc.prune.masks import apply_masks
from asrc.prune.objective import PruningObjective
from asrc.prune.spec import PruneSpec

__all__ = ["AsrcCTCModel", "AsrcDistillModel", "espnet_token_list", "greedy_error_counts", "load_teacher",
           "transcribed_ctc_loss"]

logger = logging.getLogger(__name__)


# ESPnet builds these from options; asrc's models read the raw waveform and own their CTC head.
_UNSUPPORTED = {
    "frontend": "--input_size 1 (no frontend)",
    "specaug": "--specaug none (use the wav2vec 2.0 masks of encoder_conf.config)",
    "normalize": "--normalize none (use normalize_waveform of encoder_conf.config)",
    "preencoder": "--preencoder none",
    "postencoder": "--postencoder none",
    "decoder": "--decoder none",
    "joint_network": "no --joint_net_conf",
}


ESPNET_SPACE = "<space>"
FAIRSEQ_EOS = "</s>"


def espnet_token_list(tokens: Sequence[str]) -> Tuple[list, str]:
    """``(token list, sos/eos symbol)`` as ESPnet's inference tools need them (see the module doc)."""
    tokens = list(tokens)
    if WORD_BOUNDARY in tokens and ESPNET_SPACE not in tokens:
        tokens[tokens.index(WORD_BOUNDARY)] = ESPNET_SPACE
    sos_eos = FAIRSEQ_EOS if SOS_EOS not in tokens and FAIRSEQ_EOS in tokens else SOS_EOS
    return tokens, sos_eos


def greedy_error_counts(logits: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor,
                        blank: int = BLANK_ID) -> Tuple[int, int]:
    """(edit distance, reference length) summed over the batch for greedy CTC output."""
    import editdistance

    best = logits.argmax(-1).cpu()
    errors = total = 0
    for i in range(best.shape[0]):
        hyp = torch.unique_consecutive(best[i, : int(lengths[i])])
        hyp = hyp[hyp != blank].tolist()
        ref = targets[i, : int(target_lengths[i])].tolist()
        errors += editdistance.eval(hyp, ref)
        total += len(ref)
    return errors, total


def transcribed_ctc_loss(logits: Tensor, lengths: Tensor, text: Tensor, text_lengths: Tensor) -> Tensor:
    """CTC over the utterances that have a transcript (``text_lengths > 0``); untranscribed ones
    (empty text, see :func:`asrc.espnet.data.write_training_text`) get no CTC, not the loss of
    an all-blank output. 0 when the batch has no transcript."""
    has = text_lengths > 0
    if bool(has.all()):
        return ctc_loss(logits, lengths, text, text_lengths, blank=BLANK_ID)
    if not bool(has.any()):
        return logits.sum() * 0.0  # keeps the graph (and DDP) intact
    return ctc_loss(logits[has], lengths[has], text[has], text_lengths[has], blank=BLANK_ID)


def load_teacher(path) -> Wav2Vec2CTC:
    """The teacher of a distillation run: a float asrc model directory with ``tokens.txt``, in eval mode."""
    if path is None:
        raise ConfigError("--model asrc_distill needs model_conf.teacher: the asrc model directory of the teacher")
    if not is_model_dir(path):
        raise FileNotFoundError(f"model_conf.teacher: {path} is not an asrc model directory "
                                f"(needs config.yaml and model.pth; asrc-convert writes one from HF/fairseq)")
    if (Path(path) / QUANT_NAME).is_file():
        raise ConfigError(f"model_conf.teacher: {path} is a quantized model; distil from the float teacher")
    if not (Path(path) / TOKENS_NAME).is_file():
        raise ConfigError(f"model_conf.teacher: {path} has no {TOKENS_NAME}; the token sets cannot be checked")
    teacher = load(path).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _same_dir(a, b) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


class _AsrcModelBase(ESPnetASRModel):
    """Checks shared by asrc's model classes.

    An :class:`ESPnetASRModel` (``ASRTask.build_model`` insists on one) in CTC-only mode whose
    ``ctc.ctc_lo`` *is* the asrc model's CTC head, so ESPnet's own inference (``Speech2Text``)
    decodes these models too; ``forward`` is asrc's.
    """

    name = "asrc"

    def __init__(self, vocab_size: int, token_list: Sequence[str], encoder, ctc: Optional[CTC] = None,
                 **components):
        unexpected = sorted(k for k in components if k not in _UNSUPPORTED)
        if unexpected:
            raise ConfigError(f"--model {self.name}: unknown model_conf keys {unexpected}")
        used = [f"{k} (set {_UNSUPPORTED[k]})" for k, v in components.items() if v is not None]
        if used:
            raise ConfigError(f"--model {self.name} reads the raw waveform with its own CTC head; remove: {'; '.join(used)}")
        if not isinstance(encoder, AsrcWav2Vec2Encoder):
            raise ConfigError(f"--model {self.name} needs --encoder asrc_wav2vec2, got {type(encoder).__name__}")
        token_list = list(token_list)
        if len(token_list) != vocab_size:
            raise ConfigError(f"token_list has {len(token_list)} tokens but vocab_size={vocab_size}")
        if encoder.config.vocab_size != vocab_size:
            raise ConfigError(f"the encoder's CTC head has vocab_size={encoder.config.vocab_size} but --token_list has "
                              f"{vocab_size} tokens")
        if encoder.init_tokens is not None:
            check_same_tokens(encoder.init_tokens, token_list, "encoder_conf.init tokens.txt", "--token_list")
        if ctc is None:
            ctc = CTC(odim=vocab_size, encoder_output_size=encoder.output_size())
        espnet_tokens, sos_eos = espnet_token_list(token_list)
        super().__init__(vocab_size=vocab_size, token_list=espnet_tokens, frontend=None, specaug=None, normalize=None,
                         preencoder=None, encoder=encoder, postencoder=None, decoder=None, ctc=ctc,
                         joint_network=None, ctc_weight=1.0, report_cer=False, report_wer=False,
                         sym_sos=sos_eos, sym_eos=sos_eos)
        self.ctc.ctc_lo = encoder.model.ctc_head

    def collect_feats(self, speech: Tensor, speech_lengths: Tensor, **kwargs) -> Dict[str, Tensor]:
        return {"feats": speech, "feats_lengths": speech_lengths}


class AsrcCTCModel(_AsrcModelBase):
    """CTC training or fine-tuning of an asrc wav2vec 2.0 model."""

    name = "asrc_ctc"

    def forward(self, speech: Tensor, speech_lengths: Tensor, text: Tensor, text_lengths: Tensor, **kwargs):
        out = self.encoder.encode(speech, speech_lengths)
        logits = self.encoder.ctc_logits(out.x)
        loss = ctc_loss(logits, out.lengths, text, text_lengths, blank=BLANK_ID)
        stats = {"loss": loss.detach(), "student_loss": loss.detach(), "cer": None}
        if not self.training:
            errors, total = greedy_error_counts(logits, out.lengths, text, text_lengths)
            stats["cer"] = torch.tensor(errors / max(total, 1))
        return force_gatherable((loss, stats, speech.shape[0]), loss.device)


class AsrcDistillModel(_AsrcModelBase):
    """Teacher -> student distillation; the student is the encoder, the teacher stays frozen."""

    name = "asrc_distill"

    def __init__(self, vocab_size: int, token_list: Sequence[str], encoder, ctc=None, teacher: Optional[str] = None,
                 temperature: float = 1.0, loss_weights: Optional[dict] = None,
                 teacher_layer_map: Optional[dict] = None, **components):
        super().__init__(vocab_size, token_list, encoder, ctc, **components)
        objective = DistillSpec.from_dict(dict(temperature=temperature, loss_weights=loss_weights,
                                               teacher_layer_map=teacher_layer_map), source="model_conf")
        self.temperature = objective.temperature
        self.weights = objective.loss_weights
        teacher_layer_map = objective.teacher_layer_map
        teacher_model = load_teacher(teacher)
        check_same_tokens(teacher_model.tokens, list(token_list), f"teacher {teacher}", "--token_list")
        check_same_frames(teacher_model.config, encoder.config)
        # A plain attribute, not a submodule: the teacher must stay out of state_dict(),
        # parameters() (optimizer, DDP) and train(); _apply below still moves it with the model.
        self.__dict__["teacher"] = teacher_model
        self.teacher_path = str(teacher)
        self.hidden_predictor = None
        if self.weights.hidden_loss > 0:
            if not teacher_layer_map and _same_dir(encoder.init_path, teacher) and encoder.init_report is not None:
                # Each student layer learns to keep computing what the teacher layer it was copied from did.
                teacher_layer_map = dict(encoder.init_report.hidden_state_pairs())
            layer_map = resolve_layer_map(teacher_layer_map, encoder.config, teacher_model.config)
            self.hidden_predictor = HiddenStatePredictor(layer_map, encoder.config.embed_dim,
                                                         teacher_model.config.embed_dim)
            logger.info("hidden_loss layer map (student state -> teacher state): %s", layer_map)
        elif teacher_layer_map:
            raise ConfigError("model_conf.teacher_layer_map is set but loss_weights.hidden_loss is 0")
        #: The gates and Lagrangian of structured pruning (:meth:`enable_pruning`); None without.
        self.pruning = None

    def enable_pruning(self, spec: PruneSpec) -> None:
        """Prune the student while distilling (module doc); called by the task for a ``prune:`` section."""
        self.pruning = PruningObjective(self.encoder.config, spec)
        logger.info("structured pruning: %s; unpruned student %d parameters", spec.to_dict(),
                    int(self.pruning.full_params))

    def _apply(self, fn, *args, **kwargs):
        self.teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, speech: Tensor, speech_lengths: Tensor, text: Tensor, text_lengths: Tensor, **kwargs):
        wav = as_waveform(speech)
        need_hidden = self.hidden_predictor is not None
        with torch.no_grad():
            t_out = self.teacher.encode(wav, speech_lengths, output_hidden_states=need_hidden)
            t_logits = self.teacher.ctc_head(t_out.x)
        with contextlib.ExitStack() as stack:
            if self.pruning is not None:
                stack.enter_context(apply_masks(self.encoder.model, self.pruning.gates()))
            s_out = self.encoder.encode(wav, speech_lengths, output_hidden_states=need_hidden, return_features=True)
            s_logits = self.encoder.ctc_logits(s_out.x)
        if not torch.equal(s_out.lengths, t_out.lengths):
            raise RuntimeError(f"student frames {s_out.lengths.tolist()} != teacher frames {t_out.lengths.tolist()}")
        lengths = s_out.lengths

        terms = {
            "kd_loss": kd_loss(s_logits, t_logits, lengths, self.temperature),
            "student_loss": transcribed_ctc_loss(s_logits, lengths, text, text_lengths),
            "cos_embed_loss": cos_embed_loss(s_logits, t_logits, lengths),
            "features_pen": features_pen(s_out.features, lengths),
        }
        parts = {}
        if need_hidden:
            terms["hidden_loss"], parts = self.hidden_predictor(s_out.hidden_states, t_out.hidden_states, lengths)
        loss = self.weights.total(terms)
        prune_stats = {}
        if self.pruning is not None:
            penalty, prune_stats = self.pruning(int(self.encoder.num_updates))
            if self.training:
                loss = loss + penalty

        stats = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, **parts, **prune_stats,
                 "cer": None, "cer_teacher": None}
        if not self.training:
            errors, total = greedy_error_counts(s_logits, lengths, text, text_lengths)
            stats["cer"] = torch.tensor(errors / max(total, 1))
            errors, total = greedy_error_counts(t_logits, lengths, text, text_lengths)
            stats["cer_teacher"] = torch.tensor(errors / max(total, 1))
        return force_gatherable((loss, stats, speech.shape[0]), loss.device)
