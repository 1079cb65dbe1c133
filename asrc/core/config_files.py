"""Reading configuration files: YAML and JSON mappings, and the check for unknown keys.

Every reader of a YAML or JSON file in asrc goes through these, so that a damaged file or a
misspelt key gives the same one-line error everywhere: the file (or section) and the key.
"""

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Type

from asrc.errors import AsrcError, ConfigError

__all__ = ["check_known_keys", "read_json_object", "read_yaml_mapping"]


def check_known_keys(d: Mapping, known: Iterable[str], source: str, what: str = "keys",
                     error: Type[Exception] = ConfigError) -> None:
    """Raise ``error`` naming every key of ``d`` not in ``known``, and the known ones.

    source: the file and/or section the mapping came from; what: how the keys are called in
    the message (``"Wav2Vec2Config keys"``, ``"keys"``).
    """
    known = set(known)
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise error(f"{source}: unknown {what} {unknown} (known: {sorted(known)})")


def read_yaml_mapping(path, error: Type[Exception] = ConfigError) -> dict:
    """The mapping a YAML file holds (an empty file is ``{}``); anything else raises ``error``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            data: Any = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def read_json_object(path, error: Type[Exception] = AsrcError, hint: str = "") -> dict:
    """The JSON object in ``path``; a damaged file raises ``error`` naming it (``hint`` appended)."""
    hint = f"; {hint}" if hint else ""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for a binary file
        raise error(f"{path}: not valid JSON ({e}){hint}") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object ({{...}}), got {type(data).__name__}{hint}")
    return data
