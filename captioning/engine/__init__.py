"""The neutral engine both products run on: the command-line base (`cli_base`: one-line errors, signals),
`device` (the one device resolver), `runtime` (process settings applied before torch loads, lazy exports),
`figures` (attention figures) and `stopping` (SIGINT/SIGTERM during training). Together with
`captioning.training` (the loop, configuration, state) and `captioning.data` it is the library `vqa` and `app`
build on; nothing here knows about captions or questions. Importing this package imports no torch."""
