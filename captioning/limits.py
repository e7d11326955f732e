"""Defaults shared by the library, the commands and the app, in a module that imports nothing heavy, so a
command's `--help` does not wait for torch."""

DEFAULT_BEAM_SIZE = 3  # what `caption`, `answer` and the commands use unless told otherwise
