"""The dense model of a structured-pruning run, written as an asrc model directory.

    export_pruned_model_dir("exp/prune_sp75", "exp/prune_sp75/model")

reads the run's ``config.yaml`` (its ``prune:`` section and the student's config) and a
checkpoint, sets the gates to their deterministic values (:mod:`asrc.prune.gates`), and writes
:func:`asrc.prune.masks.materialise` of the student: ``config.yaml`` (heterogeneous layers),
``model.pth``, ``tokens.txt``, loadable with :func:`asrc.models.load` like any other. The
checkpoint defaults to ``latest.pth``, the gates at the end of training (an average over
epochs would mix gates of earlier, less sparse targets), else :data:`DEFAULT_CHECKPOINTS`.

The Lagrange multipliers do not always leave the expected cost on the target at the last update
(at AN4 scale they swing past it and back, egs/an4/RESULTS.md). ``export_at_target`` (the
``prune:`` key, or the argument) first moves every gate by one common offset of its
``log_alpha`` until the dense model's cost comes nearest the target
(:meth:`asrc.prune.objective.PruningObjective.shift_to_target`): the order of the gates is kept,
the structures least sure to stay are the first to go; a final distillation of the dense model
then adapts the rest.
"""

import logging
from pathlib import Path
from typing import Optional, Tuple

from asrc.errors import CheckpointError, ConfigError
from asrc.models.espnet_dir import DEFAULT_CHECKPOINTS, read_experiment_parts
from asrc.models.io import load_state_dict_strict, save_model_dir
from asrc.models.wav2vec2 import Wav2Vec2CTC, num_parameters
from asrc.prune.masks import materialise
from asrc.prune.objective import PruningObjective
from asrc.prune.spec import PruneSpec

__all__ = ["PREFIX", "export_pruned_model_dir", "read_pruned_experiment"]

logger = logging.getLogger(__name__)

#: Parameters of the :class:`PruningObjective` in the ESPnet model's state dict.
PREFIX = "pruning."


def read_pruned_experiment(exp_dir, checkpoint: Optional[str] = None) -> Tuple[Wav2Vec2CTC, PruningObjective, Path]:
    """``(gated student, its PruningObjective in eval mode, checkpoint path)`` of a pruning run."""
    exp_dir = Path(exp_dir)
    if checkpoint is None and not (exp_dir / "latest.pth").exists():
        checkpoint = next((c for c in DEFAULT_CHECKPOINTS if (exp_dir / c).is_file()), None)
    model, path, args, state = read_experiment_parts(exp_dir, checkpoint or "latest.pth")
    if args.get("prune") is None:
        raise ConfigError(f"{exp_dir}/config.yaml has no prune: section; not a structured-pruning run")
    spec = PruneSpec.from_dict(args["prune"], source=f"{exp_dir}/config.yaml prune")
    objective = PruningObjective(model.config, spec)
    own = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not own:
        raise CheckpointError(f"{path}: no {PREFIX}* parameters (gates); not a checkpoint of a pruning run")
    load_state_dict_strict(objective, own, str(path))
    return model, objective.eval(), path


def export_pruned_model_dir(exp_dir, out_dir, checkpoint: Optional[str] = None,
                            at_target: Optional[bool] = None) -> Path:
    """Write the dense model of pruning run ``exp_dir`` to ``out_dir`` (module doc); returns ``out_dir``.
    ``at_target``: shift the gates onto the target first (default: the run's ``export_at_target``)."""
    model, objective, path = read_pruned_experiment(exp_dir, checkpoint)
    if objective.spec.export_at_target if at_target is None else at_target:
        before = objective.dense_cost("params")
        offset = objective.shift_to_target()
        logger.info("gates of %s shifted by %+.3f in log_alpha onto target sparsity %.3f: parameters of the dense "
                    "model %.0f -> %.0f", exp_dir, offset, objective.spec.target_sparsity, before,
                    objective.dense_cost("params"))
    dense = materialise(model, objective.gates())
    save_model_dir(dense, out_dir, dense.tokens)
    expected = float(objective.expected_cost("params").detach())
    logger.info("exported the dense model of %s (%s) to %s: %d parameters (unpruned %d, expected %.0f)",
                exp_dir, path.name, out_dir, num_parameters(dense), num_parameters(model), expected)
    return Path(out_dir)
