"""``PruneSpec``: the ``prune:`` section of a training config, in one dataclass.

    prune:
      structures: [conv, heads, ffn]   # of asrc.prune.masks.STRUCTURES (+ attention_layer, ffn_layer, hidden)
      target_sparsity: 0.75            # 1 - kept cost / cost of the unpruned student
      cost: params                     # or macs (per clip of cost_seconds)
      cost_seconds: 1.0
      warmup_updates: 5000             # target ramps linearly from 0 to target_sparsity
      reg_lr: 0.02                     # learning rate of the gates and the Lagrange multipliers
      init_drop_rate: 0.01             # initial drop probability of every gate
      export_at_target: false          # export: shift the gates so the dense model meets the target

Defaults are DPHuBERT's published settings (Peng et al., 2023): conv channels, heads and
feed-forward units, 75 % sparsity over 5000 warm-up updates, 0.02 for the gates and
multipliers, gates initialised open. Unknown keys and values of the wrong kind are a
:class:`asrc.errors.ConfigError` naming them.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional

from asrc.errors import ConfigError
from asrc.prune.cost import COSTS
from asrc.prune.masks import STRUCTURES

__all__ = ["PruneSpec"]


@dataclass
class PruneSpec:
    structures: List[str] = field(default_factory=lambda: ["conv", "heads", "ffn"])
    target_sparsity: float = 0.75
    cost: str = "params"
    cost_seconds: float = 1.0
    warmup_updates: int = 5000
    reg_lr: float = 0.02
    init_drop_rate: float = 0.01
    export_at_target: bool = False

    def __post_init__(self):
        problems = []
        s = self.structures
        if not (isinstance(s, list) and s and all(isinstance(x, str) for x in s)):
            problems.append(f"structures={s!r} must be a non-empty list of {list(STRUCTURES)}")
        else:
            unknown = [x for x in s if x not in STRUCTURES]
            if unknown:
                problems.append(f"structures {unknown} unknown (known: {list(STRUCTURES)})")
            repeated = sorted({x for x in s if s.count(x) > 1})
            if repeated:
                problems.append(f"structures {repeated} given more than once")

        def number(name, ok, what):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
                problems.append(f"{name}={v!r} must be {what}")

        number("target_sparsity", lambda v: 0 <= v < 1, "a number in [0, 1)")
        number("cost_seconds", lambda v: v > 0, "a number > 0")
        number("reg_lr", lambda v: v > 0, "a number > 0")
        number("init_drop_rate", lambda v: 0 < v < 1, "a number in (0, 1)")
        if type(self.warmup_updates) is not int or self.warmup_updates < 0:
            problems.append(f"warmup_updates={self.warmup_updates!r} must be an integer >= 0")
        if not isinstance(self.export_at_target, bool):
            problems.append(f"export_at_target={self.export_at_target!r} must be true or false")
        if self.cost not in COSTS:
            problems.append(f"cost={self.cost!r} must be one of {list(COSTS)}")
        if problems:
            raise ConfigError("prune: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Optional[dict], source: str = "prune") -> "PruneSpec":
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of pruning keys, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown} (known: {known})")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {str(e).removeprefix('prune: ')}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
