"""Knowledge distillation: the losses (:mod:`asrc.distill.losses`), the teacher/student pairing
checks and layer map (:mod:`asrc.distill.pairing`), and the original demo's config
(:mod:`asrc.distill.demo_config`). Pure torch; the ESPnet model class that uses them is
:class:`asrc.espnet.models.AsrcDistillModel`.
"""

from asrc.distill.losses import (
    LOSS_TERMS, HiddenStatePredictor, LossWeights, cos_embed_loss, ctc_loss, features_pen, hidden_state_loss, kd_loss,
)
from asrc.distill.pairing import check_same_frames, check_same_tokens, default_layer_map, resolve_layer_map

__all__ = [
    "LOSS_TERMS", "LossWeights", "HiddenStatePredictor", "kd_loss", "ctc_loss", "features_pen", "cos_embed_loss",
    "hidden_state_loss", "check_same_tokens", "check_same_frames", "default_layer_map", "resolve_layer_map",
]
