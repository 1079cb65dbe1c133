"""Exceptions raised for bad input; the message always names the culprit."""


class AsrcError(Exception):
    """Bad input or state that a user can fix: a file, an utterance, a config key."""


class ConfigError(AsrcError, ValueError):
    """A configuration with unknown, missing or inconsistent keys."""


class CheckpointError(AsrcError, ValueError):
    """A checkpoint whose keys or shapes do not fit the model."""
