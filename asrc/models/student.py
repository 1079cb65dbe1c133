"""Students from teachers: a smaller wav2vec 2.0 CTC model initialised from a bigger one.

    student, report = build_student(teacher, teacher.config.replace(num_layers=4, conv_groups=2))
    print(report.format())
    # the same from a student spec (asrc.models.student_spec), as asrc-train builds it
    student, report = build_from_spec(teacher, StudentSpec.from_yaml_file("conf/student.yaml"))

Layer numbering
    Transformer layers are numbered from 1, like the hidden states they produce: teacher layer
    ``i`` is the layer whose output is ``hidden_states[i]`` (``hidden_states[0]`` is the input of
    layer 1). ``report.layer_map[j] == i`` means student layer ``j + 1`` was initialised from
    teacher layer ``i``; that list is what distillation takes as ``teacher_layer_map``, and
    :meth:`InitReport.hidden_state_pairs` turns it into hidden-state indices (``layer_reuse``
    included).

``layer_init`` (``n`` student layers from ``L`` teacher layers)
    ``"every_k"``  layer ``j`` (1..n) <- ``floor((j - 1) * L / n) + 1``: every k-th layer from the
                   first, k = L / n (12 -> 4: 1, 4, 7, 10; 24 -> 4: 1, 7, 13, 19; 12 -> 5: 1, 3, 5, 8,
                   10; 6 -> 4: 1, 2, 4, 5). Where n divides L this is the Knowledge-Distillation-
                   Toolkit's ``every_k`` (teacher layers ``0, k, 2k, ...`` counted from 0), which the
                   demo config names. Starting at the first layer matters: a student that drops
                   the teacher's first layer starts far worse (egs/an4/RESULTS.md, "Building the
                   student").
                   ALBERT-style ``layer_reuse`` students use it too: each reused layer starts as the
                   teacher layer that begins the span of depth it stands for.
    ``"first_k"``  1..n;   ``"last_k"``  L-n+1..L;
    a list         1-based teacher layers, one per student layer (repeats allowed).

Which tensors are copied
    A student tensor is copied when its teacher counterpart has the same shape *and* the same
    meaning (attention projections need the same ``num_heads``; conv layer ``i`` needs the same
    channels, kernel and stride). Otherwise it keeps its random initialisation and the report
    says why: width changes are never truncated. The only tensors derived rather than copied are
    the CNN front-end kernels that the student groups (``conv_groups``) or shares (``conv_share``)
    differently from the teacher, initialised by ``conv_init``:

    ``"lstsq"`` (default)  ridge least squares on calibration activations: for each output group,
                  the student's grouped kernel that best predicts the teacher's conv output from
                  the *student's* own input to that layer (so earlier approximation errors are
                  corrected, layer by layer), shrunk toward the ``"energy"`` kernel. Channels of
                  a conv front end are strongly correlated (all are filters of one waveform), so
                  the input block a group sees predicts much of what the cut blocks contributed.
    ``"energy"``  the block-diagonal part of the teacher kernel, each output channel rescaled so
                  its output energy on the calibration input matches the teacher's.
    ``"block_diagonal"``  the block-diagonal part alone (what the kernel keeps of the teacher
                  when the off-diagonal input blocks are cut).

    Shared kernels start from the average of the teacher kernels they replace (the kernel
    closest to all of them in squared error, hence the best single choice when channels are
    uncorrelated; picking one would serve one layer and ignore the others), then the same
    rescaling / least-squares fit runs jointly over every layer that uses the kernel.

    Never is one input block copied into every group (the deprecated fork did): group ``g`` then
    weighs input block ``g`` with weights learnt for block 0 and computes something else.

The report gives, per conv layer, the cosine similarity of the student's and the teacher's
conv-layer outputs (after norm and GELU) on the calibration input; by default a fixed batch of
pink noise (:func:`default_calibration`, 8 x 2 s). Real speech is much better: pass some training
utterances (a few tens of seconds; :func:`asrc.core.batching.pad_waveforms` batches them) as ``calibration``
(``asrc-train`` does, from ``--train_data_dir``): kernels fitted on pink noise look fine on
pink noise but not on speech (egs/an4/RESULTS.md, "Building the student").
"""

import numbers
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.core.constants import SAMPLE_RATE
from asrc.models.config import Wav2Vec2Config
from asrc.models.student_spec import CONV_INITS, StudentSpec
from asrc.models.student_spec import LAYER_SELECTIONS as LAYER_INITS
from asrc.models.wav2vec2 import Wav2Vec2CTC, conv_layer_groups
# Fields a student cannot change and still inherit the teacher's tensors with their meaning.
STRUCTURE_FIELDS = ("extractor_mode", "layer_norm_first", "normalize_waveform", "conv_bias")
# Ridge strength per frame: lambda = RIDGE * trace(X^T X) / frames (see _KernelFit).
RIDGE = 0.1


@dataclass
class TensorInit:
    """How one student parameter was initialised.

    action: ``"copied"`` (identical to ``source[0]``), ``"derived"`` (computed from the teacher
    tensors in ``source``, ``note`` says how) or ``"random"`` (``note`` says why nothing fit).
    """

    name: str
    action: str
    source: List[str] = field(default_factory=list)
    note: str = ""


@dataclass
class InitReport:
    """What :func:`build_student` did; ``format()`` prints it, ``to_dict()`` serialises it."""

    layer_init: str
    layer_map: List[int]
    teacher_layers: int
    student_reuse: int
    teacher_reuse: int
    tensors: List[TensorInit]
    conv_init: str
    conv_cosine: List[float]
    calibration: str

    def names(self, action: str) -> List[str]:
        return [t.name for t in self.tensors if t.action == action]

    @property
    def copied(self) -> List[str]:
        return self.names("copied")

    @property
    def derived(self) -> List[str]:
        return self.names("derived")

    @property
    def random(self) -> List[str]:
        return self.names("random")

    def hidden_state_pairs(self) -> List[Tuple[int, int]]:
        """``(student, teacher)`` hidden-state indices for layer-to-layer distillation.

        Student layer ``j`` (1-based) ends at student hidden state ``j * layer_reuse``. With
        ``every_k`` it stands for the span of teacher layers that begins with the one it was
        initialised from, and is paired with the output of that span's last layer
        (``ceil(j * L / n)``: 12 -> 4 pairs with 3, 6, 9, 12, so the last student layer, which
        feeds the copied CTC head, imitates the teacher's last); otherwise with the output of
        the teacher layer it was initialised from.
        """
        n = len(self.layer_map)
        targets = ([-(-(j + 1) * self.teacher_layers // n) for j in range(n)] if self.layer_init == "every_k"
                   else self.layer_map)
        return [((j + 1) * self.student_reuse, t * self.teacher_reuse) for j, t in enumerate(targets)]

    def to_dict(self) -> dict:
        return {
            "layer_init": self.layer_init, "layer_map": list(self.layer_map), "teacher_layers": self.teacher_layers,
            "student_reuse": self.student_reuse, "teacher_reuse": self.teacher_reuse,
            "conv_init": self.conv_init, "conv_cosine": list(self.conv_cosine), "calibration": self.calibration,
            "tensors": [vars(t).copy() for t in self.tensors],
        }

    def format(self) -> str:
        lines = [f"transformer layers ({self.layer_init}, 1-based): student <- teacher "
                 + ", ".join(f"{j + 1}<-{t}" for j, t in enumerate(self.layer_map))
                 + f" (of {self.teacher_layers})"]
        counts = {a: len(self.names(a)) for a in ("copied", "derived", "random")}
        lines.append("tensors: " + ", ".join(f"{n} {a}" for a, n in counts.items()))
        for t in self.tensors:
            if t.action != "copied":
                lines.append(f"  {t.action:7s} {t.name}: {t.note}")
        lines.append(f"conv-layer output cosine vs teacher ({self.conv_init}; {self.calibration}): "
                     + " ".join(f"{c:.4f}" for c in self.conv_cosine))
        return "\n".join(lines)


def select_teacher_layers(layer_init: Union[str, Sequence[int]], teacher_layers: int, student_layers: int) -> List[int]:
    """1-based teacher layers initialising each student layer (see the module docstring)."""
    n, total = student_layers, teacher_layers
    if isinstance(layer_init, str):
        if layer_init not in LAYER_INITS:
            raise ValueError(f"layer_init={layer_init!r} is not one of {LAYER_INITS} or a list of teacher layers")
        if n > total:
            raise ValueError(f"layer_init={layer_init!r}: the student has {n} layers but the teacher only {total}; "
                             f"pass an explicit list of 1-based teacher layers (repeats allowed)")
        if layer_init == "every_k":
            return [j * total // n + 1 for j in range(n)]
        if layer_init == "first_k":
            return list(range(1, n + 1))
        return list(range(total - n + 1, total + 1))
    chosen = list(layer_init)
    if len(chosen) != n:
        raise ValueError(f"layer_init lists {len(chosen)} teacher layers {chosen} for a student with {n} layers")
    bad = [i for i in chosen if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 1 <= i <= total]
    if bad:
        raise ValueError(f"layer_init {chosen}: {bad} are not teacher layers; layers are numbered 1..{total}")
    return [int(i) for i in chosen]


def default_calibration(batch: int = 8, seconds: float = 2.0, seed: int = 0) -> Tensor:
    """A fixed ``[batch, samples]`` batch of pink (1/f power) noise, unit variance.

    Speech has most of its energy at low frequencies; kernels fitted on pink noise carry over to
    speech much better than those fitted on white noise.
    """
    g = torch.Generator().manual_seed(seed)
    samples = int(round(seconds * SAMPLE_RATE))
    spectrum = torch.randn(batch, samples // 2 + 1, dtype=torch.complex64, generator=g)
    freqs = torch.arange(samples // 2 + 1, dtype=torch.float32)
    spectrum = spectrum / freqs.clamp(min=1.0).sqrt()
    wav = torch.fft.irfft(spectrum, n=samples)
    return (wav - wav.mean(1, keepdim=True)) / wav.std(1, keepdim=True)


# ---------------------------------------------------------------------------------------------
# CNN front end: activations, grouped kernels, fitting.


@dataclass
class _ConvActivations:
    """Per conv layer: conv output ``[B, C, T]`` (before norm/GELU), block output, valid frames ``[B]``."""

    conv_out: List[Tensor]
    block_out: List[Tensor]
    lengths: List[Tensor]


@torch.no_grad()
def _run_front_end(model: Wav2Vec2CTC, wav: Tensor, lengths: Tensor,
                   pre_hooks: Optional[Dict[int, Callable[[Tensor], None]]] = None,
                   keep: bool = True) -> _ConvActivations:
    """Run ``model``'s front end in eval mode exactly as ``encode`` does, keeping every layer's
    outputs (unless ``keep`` is False; about 26 MB per second of audio for 512 channels).

    pre_hooks: conv layer index -> function called with that layer's input ``[B, C, T]`` just
    before its conv runs (it may change the conv's weights).
    """
    acts = _ConvActivations([], [], [])
    handles = []
    for i, block in enumerate(model.feature_extractor.conv_layers):
        if keep:
            # A copy: the inference fast path applies GELU in place to this very tensor.
            handles.append(block.conv.register_forward_hook(lambda _m, _a, out: acts.conv_out.append(out.clone())))
            handles.append(block.register_forward_hook(lambda _m, _a, out: acts.block_out.append(out)))
        if pre_hooks and i in pre_hooks:
            handles.append(block.conv.register_forward_pre_hook(lambda _m, args, f=pre_hooks[i]: f(args[0])))
    was_training = model.training
    try:
        model.eval()
        if model.config.normalize_waveform:
            wav = model.normalize(wav, lengths)
        model.feature_extractor(wav, lengths)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    for block in model.feature_extractor.conv_layers:
        lengths = block.output_lengths(lengths)
        acts.lengths.append(lengths)
    return acts


def _cosines(student: _ConvActivations, teacher: _ConvActivations) -> List[float]:
    cosines = []
    for s, t, frames in zip(student.block_out, teacher.block_out, teacher.lengths):
        if s.shape != t.shape:
            break
        per_utt = [F.cosine_similarity(s[b, :, :n].flatten().double(), t[b, :, :n].flatten().double(), dim=0)
                   for b, n in enumerate(frames.tolist())]
        cosines.append(float(torch.stack(per_utt).mean()))
    return cosines


def conv_output_cosine(student: Wav2Vec2CTC, teacher: Wav2Vec2CTC, wav: Tensor,
                       lengths: Optional[Tensor] = None) -> List[float]:
    """Cosine similarity of student and teacher conv-layer outputs (after norm and GELU).

    wav: ``[batch, sample]``; lengths: ``[batch]`` valid samples (default: all). Per layer, the
    cosine over all channels and valid frames of each utterance, averaged over the batch; the
    list stops at the first layer whose output shape differs.
    """
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
    return _cosines(_run_front_end(student, wav, lengths), _run_front_end(teacher, wav, lengths))


def expand_groups(weight: Tensor, groups: int) -> Tensor:
    """Grouped conv kernel ``[out, in/groups, k]`` -> the equivalent full kernel ``[out, in, k]``."""
    if groups == 1:
        return weight
    out_ch, ig, k = weight.shape
    og = out_ch // groups
    dense = weight.new_zeros(out_ch, ig * groups, k)
    for g in range(groups):
        dense[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = weight[g * og:(g + 1) * og]
    return dense


def block_diagonal(dense: Tensor, groups: int) -> Tensor:
    """Full kernel ``[out, in, k]`` -> the grouped kernel ``[out, in/groups, k]`` of its diagonal blocks."""
    out_ch, in_ch, _ = dense.shape
    og, ig = out_ch // groups, in_ch // groups
    return torch.cat([dense[g * og:(g + 1) * og, g * ig:(g + 1) * ig] for g in range(groups)])


class _KernelFit:
    """Initialises one distinct student kernel from a prior and calibration activations.

    ``members`` are the conv layers using the kernel (several when shared). Per output channel
    the prior (block-diagonal teacher kernel, averaged over the teachers' layers when shared) is
    rescaled so that its output energy matches the teacher's; ``"lstsq"`` then solves, per output
    group, ``min ||Y - X W||^2 + lam ||W - W_energy||^2`` with ``X`` the student's input patches of
    the group's input block (plus a ones column for the bias), ``Y`` the teacher's conv output on
    the group's output channels, both over every member layer's valid frames. Statistics are
    float32 per utterance, summed in float64. ``lam = RIDGE * trace(X^T X) / frames`` is RIDGE
    times the mean squared norm of an input patch: relative to the average eigenvalue of
    ``X^T X`` it is ``RIDGE * dim / frames``, strong where a layer has few frames per unknown
    (the last layers run at 50-100 frames/s) and vanishing as calibration data grows. Measured on
    a base front end, RIDGE in 0.05..0.2 gives the same held-out cosines within 0.005.
    """

    def __init__(self, conv: nn.Conv1d, prior_w: Tensor, prior_b: Optional[Tensor], members: List[int], method: str):
        self.conv, self.prior_w, self.prior_b, self.members, self.method = conv, prior_w, prior_b, members, method
        self.groups, self.kernel, self.stride = conv.groups, conv.kernel_size[0], conv.stride[0]
        out_ch, ig, _ = prior_w.shape
        self.dim = ig * self.kernel + (prior_b is not None)
        self.reset()

    def reset(self):
        out_ch, dev = self.prior_w.shape[0], self.prior_w.device
        self.teacher_energy = torch.zeros(out_ch, dtype=torch.float64, device=dev)
        self.prior_energy = torch.zeros(out_ch, dtype=torch.float64, device=dev)
        if self.method == "lstsq":
            og = out_ch // self.groups
            self.gram = torch.zeros(self.groups, self.dim, self.dim, dtype=torch.float64, device=dev)
            self.cross = torch.zeros(self.groups, self.dim, og, dtype=torch.float64, device=dev)
            self.rows = 0

    def accumulate(self, x: Tensor, y: Tensor, frames: Tensor):
        """x: student input ``[B, C_in, T]``; y: teacher conv output ``[B, C_out, T']``; frames: valid ``[B]``."""
        x, y = x.float(), y.float()
        y_prior = F.conv1d(x, self.prior_w.float(), None if self.prior_b is None else self.prior_b.float(),
                           stride=self.stride, groups=self.groups)
        g, k = self.groups, self.kernel
        frames = frames.tolist()
        # Each layer sharing the kernel weighs the same in the joint fit, whatever its frame rate
        # or loudness: its statistics are divided by its total output energy.
        weight = 1.0 / max(sum(float(y[b, :, :n].double().square().sum()) for b, n in enumerate(frames)), 1e-30)
        for b, n in enumerate(frames):
            self.teacher_energy += weight * y[b, :, :n].square().sum(-1).double()
            self.prior_energy += weight * y_prior[b, :, :n].square().sum(-1).double()
            if self.method != "lstsq":
                continue
            c_in = x.shape[1]
            patches = x[b].unfold(-1, k, self.stride)[:, :n]  # [C_in, n, k]
            patches = patches.reshape(g, c_in // g, n, k).permute(0, 2, 1, 3).reshape(g, n, -1)
            if self.prior_b is not None:
                patches = torch.cat([patches, patches.new_ones(g, n, 1)], -1)
            target = y[b, :, :n].reshape(g, -1, n).transpose(1, 2)  # [g, n, og]
            self.gram += weight * torch.bmm(patches.transpose(1, 2), patches).double()
            self.cross += weight * torch.bmm(patches.transpose(1, 2), target).double()
            self.rows += n

    @torch.no_grad()
    def fit(self):
        # A channel the prior leaves silent keeps scale 1 (there is nothing to rescale).
        scale = torch.where(self.prior_energy > 0, self.teacher_energy / self.prior_energy, 1.0).sqrt()
        w = self.prior_w.double() * scale[:, None, None]
        b = None if self.prior_b is None else self.prior_b.double() * scale
        if self.method == "lstsq":
            g = self.groups
            og = w.shape[0] // g
            w_flat = w.reshape(g, og, -1)
            if b is not None:
                w_flat = torch.cat([w_flat, b.reshape(g, og, 1)], -1)
            w_flat = w_flat.transpose(1, 2)  # [g, dim, og]
            lam = RIDGE * self.gram.diagonal(dim1=1, dim2=2).sum(-1) / self.rows
            eye = torch.eye(self.dim, dtype=torch.float64, device=w.device)
            # The ridge makes the system positive definite, so Cholesky works; batched LU can hang
            # in MKL's DLASWP on large systems.
            factor = torch.linalg.cholesky(self.gram + lam[:, None, None] * eye)
            solved = torch.cholesky_solve(self.cross + lam[:, None, None] * w_flat, factor)
            solved = solved.transpose(1, 2)  # [g, og, dim]
            if b is not None:
                b = solved[..., -1].reshape(-1)
                solved = solved[..., :-1]
            w = solved.reshape(self.prior_w.shape)
        self.assign(w, b)

    def assign(self, w: Tensor, b: Optional[Tensor]):
        self.conv.weight.copy_(w)
        if b is not None:
            self.conv.bias.copy_(b)


def _conv_geometry(config: Wav2Vec2Config) -> List[Tuple[int, int, int, int]]:
    """(in, out, kernel, stride) of every conv layer."""
    in_ch, out = 1, []
    for c, k, s in config.conv_layers:
        out.append((in_ch, c, k, s))
        in_ch = c
    return out


@torch.no_grad()
def _init_front_end(teacher: Wav2Vec2CTC, student: Wav2Vec2CTC, wav: Tensor, lengths: Tensor,
                    conv_init: str) -> Tuple[List[TensorInit], List[float]]:
    """Copy or derive the student's conv kernels and biases.

    Returns the report entries and the per-layer conv-output cosines on the calibration input.
    """
    t_geo, s_geo = _conv_geometry(teacher.config), _conv_geometry(student.config)
    t_groups = conv_layer_groups(teacher.config)
    t_convs = [b.conv for b in teacher.feature_extractor.conv_layers]
    s_convs = [b.conv for b in student.feature_extractor.conv_layers]

    # Distinct student kernels in order of first use, with the layers that use each.
    kernels: Dict[int, List[int]] = {}
    for i, conv in enumerate(s_convs):
        kernels.setdefault(id(conv.weight), []).append(i)

    entries, fits = [], []
    for members in kernels.values():
        conv = s_convs[members[0]]
        name = f"feature_extractor.conv_layers.{members[0]}.conv"
        tensors = ("weight", "bias") if conv.bias is not None else ("weight",)
        shared = f" (shared by conv layers {members})" if len(members) > 1 else ""
        sources = [i for i in members if i < len(t_geo) and t_geo[i] == s_geo[i]]
        if not sources:
            why = "; ".join(f"conv layer {i} is (in, out, kernel, stride)={s_geo[i]} vs teacher "
                            f"{t_geo[i] if i < len(t_geo) else 'none'}" for i in members)
            entries += [TensorInit(f"{name}.{p}", "random", [], why + shared) for p in tensors]
            continue
        skipped = [i for i in members if i not in sources]
        # Distinct teacher kernels (a sharing teacher holds one tensor for several layers).
        distinct = list({id(t_convs[i].weight): i for i in sources}.values())
        dense = [expand_groups(t_convs[i].weight, t_groups[i]) for i in distinct]
        prior_w = torch.stack([block_diagonal(d, conv.groups) for d in dense]).mean(0)
        prior_b = torch.stack([t_convs[i].bias for i in distinct]).mean(0) if conv.bias is not None else None
        same_groups = all(t_groups[i] == conv.groups for i in distinct)
        if len(distinct) == 1 and torch.equal(expand_groups(prior_w, conv.groups), dense[0]):
            conv.weight.copy_(prior_w)
            if prior_b is not None:
                conv.bias.copy_(prior_b)
            action = "copied" if same_groups and not skipped else "derived"
            note = "" if same_groups else (f"exact: teacher groups {t_groups[distinct[0]]} nest in the "
                                           f"student's {conv.groups}")
        else:
            action = "derived"
            parts = [f"average of {len(distinct)} teacher kernels"] if len(distinct) > 1 else []
            if not same_groups:
                parts.append(f"block-diagonal part for groups={conv.groups}")
            parts.append({"lstsq": "energy-matched, then ridge least-squares fit on calibration activations",
                          "energy": "output energy matched per channel on calibration activations",
                          "block_diagonal": "not rescaled"}[conv_init])
            note = ", ".join(parts)
            fits.append(_KernelFit(conv, prior_w, prior_b, sources, conv_init))
        if skipped:
            note += f"; conv layers {skipped} differ in shape from the teacher's and did not contribute"
        entries += [TensorInit(f"{name}.{p}", action, [f"feature_extractor.conv_layers.{i}.conv.{p}" for i in distinct],
                               (note + shared).strip()) for p in tensors]

    t_acts = _run_front_end(teacher, wav, lengths)
    for fit in fits:
        fit.assign(fit.prior_w, fit.prior_b)
    if fits and conv_init != "block_diagonal":
        # Fit during the student's own forward pass: when layer m is reached its input already
        # comes from the fitted layers below. A shared kernel is refit at its last layer, and
        # the passes repeat until the inputs it makes for itself have settled.
        def hook(fit: _KernelFit, m: int):
            def on_input(x: Tensor):
                fit.accumulate(x, t_acts.conv_out[m], t_acts.lengths[m])
                if m == fit.members[-1]:
                    fit.fit()
            return on_input

        hooks = {m: hook(fit, m) for fit in fits for m in fit.members}
        passes = 1 if all(len(fit.members) == 1 for fit in fits) else 3
        for _ in range(passes):
            for fit in fits:
                fit.reset()
            _run_front_end(student, wav, lengths, hooks, keep=False)
    return entries, _cosines(_run_front_end(student, wav, lengths), t_acts)


# ---------------------------------------------------------------------------------------------
# Everything else: copy what fits.


def _teacher_name(name: str, layer_map: List[int]) -> str:
    prefix = "encoder.layers."
    if name.startswith(prefix):
        j, rest = name[len(prefix):].split(".", 1)
        return f"{prefix}{layer_map[int(j)] - 1}.{rest}"
    return name


def _meaning_differs(name: str, teacher: Wav2Vec2Config, student: Wav2Vec2Config) -> Optional[str]:
    """Why a same-shaped tensor would still mean something else in the student, or None."""
    if ".self_attn." in name and teacher.num_heads != student.num_heads:
        return f"num_heads {student.num_heads} vs teacher {teacher.num_heads}: the heads split the projection differently"
    if name == "encoder.pos_conv.weight_g" and ((student.embed_dim, student.pos_conv_groups)
                                               != (teacher.embed_dim, teacher.pos_conv_groups)):
        return "weight_v has another shape and weight_g holds the norms of weight_v's slices"
    if name.startswith("feature_extractor.conv_layers."):
        i = int(name.split(".")[2])
        t_geo, s_geo = _conv_geometry(teacher), _conv_geometry(student)
        if i >= len(t_geo) or t_geo[i] != s_geo[i]:
            return (f"conv layer {i} is (in, out, kernel, stride)={s_geo[i]} vs teacher "
                    f"{t_geo[i] if i < len(t_geo) else 'none'}")
    return None


def build_student(teacher: Wav2Vec2CTC, student_config: Wav2Vec2Config,
                  layer_init: Union[str, Sequence[int]] = "every_k", *, conv_init: str = "lstsq",
                  calibration: Optional[Tensor] = None,
                  calibration_lengths: Optional[Tensor] = None,
                  calibration_name: Optional[str] = None) -> Tuple[Wav2Vec2CTC, "InitReport"]:
    """Build a student for ``student_config`` initialised from ``teacher``.

    Args:
        teacher: the model to compress (left unchanged).
        student_config: the student's architecture; ``extractor_mode``, ``layer_norm_first``,
            ``normalize_waveform`` and ``conv_bias`` must equal the teacher's.
        layer_init: ``"every_k"``, ``"first_k"``, ``"last_k"`` or a list of 1-based teacher layers.
        conv_init: ``"lstsq"``, ``"energy"`` or ``"block_diagonal"`` for front-end kernels the
            student groups or shares differently (module docstring).
        calibration: ``[batch, sample]`` 16 kHz waveforms for fitting those kernels and for the
            reported conv-output cosines; default :func:`default_calibration`.
        calibration_lengths: ``[batch]`` valid samples of ``calibration`` (default: all).
        calibration_name: where ``calibration`` came from, for the report.

    Returns:
        ``(student, report)``: the student on the teacher's device and dtype, in training mode
        like any new module; parameters that fit nothing keep torch's random initialisation
        (seed torch for reproducibility).
    """
    t_cfg, s_cfg = teacher.config, student_config
    if t_cfg.is_heterogeneous or s_cfg.is_heterogeneous:
        which = "teacher" if t_cfg.is_heterogeneous else "student"
        raise ValueError(f"the {which} has heterogeneous (pruned) layers (layer_num_heads / layer_ffn_dims); "
                         f"layer-wise students are built from homogeneous models only (fine-tune a pruned "
                         f"model as it is: layer_init null)")
    if conv_init not in CONV_INITS:
        raise ValueError(f"conv_init={conv_init!r} is not one of {CONV_INITS}")
    differ = [f"{f}: student {getattr(s_cfg, f)!r} vs teacher {getattr(t_cfg, f)!r}"
              for f in STRUCTURE_FIELDS if getattr(s_cfg, f) != getattr(t_cfg, f)]
    if differ:
        raise ValueError("the student must keep the teacher's structure to inherit its weights; differing: "
                         + "; ".join(differ))
    layer_map = select_teacher_layers(layer_init, t_cfg.num_layers, s_cfg.num_layers)

    param = next(teacher.parameters())
    tokens = teacher.tokens if teacher.tokens is not None and s_cfg.vocab_size == t_cfg.vocab_size else None
    student = Wav2Vec2CTC(s_cfg, tokens).to(device=param.device, dtype=param.dtype)

    if calibration is None:
        calibration = default_calibration()
        description = f"default pink noise {tuple(calibration.shape)}"
    else:
        description = f"{calibration_name or 'given waveforms'} {tuple(calibration.shape)}"
    calibration = calibration.to(device=param.device, dtype=param.dtype)
    if calibration.dim() != 2:
        raise ValueError(f"calibration must be [batch, sample], got shape {tuple(calibration.shape)}")
    if calibration_lengths is None:
        calibration_lengths = torch.full((calibration.shape[0],), calibration.shape[1], dtype=torch.long)
    calibration_lengths = calibration_lengths.to(param.device)
    rf = max(t_cfg.receptive_field, s_cfg.receptive_field)
    if calibration_lengths.shape != (calibration.shape[0],) or bool((calibration_lengths < rf).any()) \
            or int(calibration_lengths.max()) > calibration.shape[1]:
        raise ValueError(f"calibration lengths {calibration_lengths.tolist()} must be one per utterance, "
                         f"at least the receptive field ({rf} samples) and at most {calibration.shape[1]}")

    t_state = teacher.state_dict()
    entries = []
    with torch.no_grad():
        for name, p in student.named_parameters():
            if name.startswith("feature_extractor.conv_layers.") and ".conv." in name:
                continue  # kernels and biases: _init_front_end
            src = _teacher_name(name, layer_map)
            if src not in t_state:
                entries.append(TensorInit(name, "random", [], "no teacher counterpart"))
                continue
            src_shape = tuple(t_state[src].shape)
            why = (None if src_shape == tuple(p.shape) else f"shape {tuple(p.shape)} vs teacher {src} {src_shape}")
            why = why or _meaning_differs(name, t_cfg, s_cfg)
            if why:
                entries.append(TensorInit(name, "random", [src], why))
            else:
                p.copy_(t_state[src])
                entries.append(TensorInit(name, "copied", [src]))
        front_end, cosines = _init_front_end(teacher, student, calibration, calibration_lengths, conv_init)
        entries += front_end

    order = {name: i for i, (name, _) in enumerate(student.named_parameters())}
    entries.sort(key=lambda e: order[e.name])
    report = InitReport(
        layer_init=layer_init if isinstance(layer_init, str) else "list",
        layer_map=layer_map, teacher_layers=t_cfg.num_layers,
        student_reuse=s_cfg.layer_reuse, teacher_reuse=t_cfg.layer_reuse, tensors=entries,
        conv_init=conv_init,
        conv_cosine=cosines,
        calibration=description,
    )
    return student, report


def build_from_spec(teacher: Wav2Vec2CTC, spec: StudentSpec, **calibration
                    ) -> Tuple[Wav2Vec2CTC, Optional["InitReport"]]:
    """The student ``spec`` describes for ``teacher``: :func:`build_student` with the spec's layer
    selection and ``conv_init`` (``calibration``: its calibration arguments), or, for
    ``init.from: random``, a model with torch's initialisation and the teacher's tokens (report
    ``None``). Seed torch for reproducibility."""
    config = spec.student_config(teacher.config)
    if spec.init_from == "random":
        param = next(teacher.parameters())
        tokens = teacher.tokens if config.vocab_size == teacher.config.vocab_size else None
        return Wav2Vec2CTC(config, tokens).to(device=param.device, dtype=param.dtype), None
    return build_student(teacher, config, spec.layer_select, conv_init=spec.conv_init, **calibration)
