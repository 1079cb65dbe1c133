"""Structured pruning with hard-concrete gates, jointly with distillation (DPHuBERT-style).

:mod:`~asrc.prune.gates` (hard-concrete gates), :mod:`~asrc.prune.masks` (masks on conv
channels, heads, feed-forward units, whole sub-layers and the residual stream's width; running a model with them;
materialising the dense model), :mod:`~asrc.prune.cost` (parameters / MACs as a function of the
structure sizes), :mod:`~asrc.prune.model_gates` (the gates of one model),
:mod:`~asrc.prune.lagrangian` (the constraint), :mod:`~asrc.prune.objective` (both together),
:mod:`~asrc.prune.spec` (the ``prune:`` config section), :mod:`~asrc.prune.export` (the dense
model directory of a pruning run). Importing the package registers ``prune:`` as a section of
the student spec.
"""

from asrc.prune.cost import Sizes, cost, mac_count, param_count
from asrc.prune.gates import HardConcrete
from asrc.prune.lagrangian import LagrangianConstraint, target_at
from asrc.prune.masks import STRUCTURES, Masks, apply_masks, materialise, pruned_config
from asrc.prune.model_gates import ModelGates
from asrc.prune.objective import PruningObjective
from asrc.prune.spec import PruneSpec
from asrc.models.student_spec import register_section

# A student spec may carry this package's section: ``prune:`` (asrc.models.student_spec).
register_section("prune", PruneSpec.from_dict)

__all__ = ["STRUCTURES", "HardConcrete", "LagrangianConstraint", "Masks", "ModelGates", "PruneSpec",
           "PruningObjective", "Sizes", "apply_masks", "cost", "mac_count", "materialise", "param_count",
           "pruned_config", "target_at"]
