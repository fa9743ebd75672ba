"""Handlers of the ``traitvec`` subcommands: arguments in, library calls, text out.

:mod:`traitvec.cli` builds the parser and dispatches to a ``cmd_*`` function here; every
translation from parsed arguments to library settings lives in :mod:`traitvec.commands.settings`
(with the table of setting spellings to flags used when an error is reported). This package and
``cli.py`` are the only places in traitvec that import argparse or print.

- :mod:`~traitvec.commands.data`: ``traits``, ``models``, ``audit``;
- :mod:`~traitvec.commands.pipeline`: ``run``, ``extract``;
- :mod:`~traitvec.commands.vet`: ``vet``;
- :mod:`~traitvec.commands.judge`: ``judge``;
- :mod:`~traitvec.commands.vectors`: ``steer``, ``export-gguf``;
- :mod:`~traitvec.commands.results`: ``results`` (the steering runs of a trait).
"""
