"""The toy domain's own commands, ``hspace-studio demo`` and ``hspace-studio evaluate``.

The command line adds them while the toy faces are the active domain
(``TOY_FACES.commands``). They are command-line code built on the command line's shared
options (:mod:`hspace_studio.cli.common`), the one import from ``cli/`` a domain's package
may make (the import-linter contracts in ``pyproject.toml``).
"""
