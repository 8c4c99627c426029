"""Errors caused by the user's input; the CLI prints them as one line, without a traceback."""


class FajaxError(Exception):
  """A problem the user can fix: the message names it and says how."""


class ConfigError(FajaxError):
  """A config value that is unknown, of the wrong kind, or inconsistent with another."""


class DataError(FajaxError):
  """Data that is missing, unreadable or not what it claims to be."""


class DivergenceError(FajaxError):
  """Training produced NaN or Inf; the run stopped before logging or saving it."""


class CheckpointError(FajaxError):
  """No checkpoint of a run can be restored."""


class StorageError(FajaxError):
  """The workdir cannot be written: its disk is full, read-only, or over quota."""
