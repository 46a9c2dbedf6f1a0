"""The ``hspace-studio`` command line.

Each subcommand lives in its own module and registers itself through
``add_parser(subparsers)`` and a ``run(args)`` function. The active domain
(``--domain``, ``$HSPACE_DOMAIN``, else the toy faces: :mod:`hspace_studio.domains`) adds
commands of its own (the toy faces: ``demo`` and ``evaluate``) and gives the default
model. Errors the user can cause end the program with a one-line message and a non-zero
exit status, never a traceback (``--debug`` shows it).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand name -> module (imported lazily so `--help` and the GUI start fast)
COMMANDS = {
    "gui": "hspace_studio.cli.gui_cmd",
    "sample": "hspace_studio.cli.sample_cmd",
    "invert": "hspace_studio.cli.invert_cmd",
    "edit": "hspace_studio.cli.edit_cmd",
    "pca": "hspace_studio.cli.discover_cmd",
    "jacobian": "hspace_studio.cli.discover_cmd",
    "supervised": "hspace_studio.cli.supervised_cmd",
    "disentangle": "hspace_studio.cli.discover_cmd",
    "name": "hspace_studio.cli.discover_cmd",
    "replay": "hspace_studio.cli.replay_cmd",
}


class ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        raise ArgumentError(f"{self.prog}: {message}")


def commands(domain=None) -> dict:
    """Subcommand name -> module: the general ones and the domain's own (default: the active
    domain's)."""
    if domain is None:
        from ..engine.domain import active_domain

        domain = active_domain()
    return {**COMMANDS, **{k: v for k, v in domain.commands.items() if k not in COMMANDS}}


def build_parser(domain=None) -> argparse.ArgumentParser:
    from ..domains import DEFAULT, DOMAINS, ENV

    ap = _Parser(prog="hspace-studio",
                 description="Find and apply semantic directions in the h-space of diffusion models.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    ap.add_argument("--domain", choices=list(DOMAINS), default=None,
                    help=f"what the tool knows about the images: its default model, classifier, segmenter, "
                         f"fit terms, presets and commands (default: ${ENV}, else {DEFAULT}; generic: none, "
                         f"the model, classifier and segmenter are your own files)")
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)
    seen = set()
    for name, modname in commands(domain).items():
        if modname in seen:
            continue
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:  # a command not built yet
                continue
            raise
        seen.add(modname)
        mod.add_parser(sub)
    return ap


def route_files(argv, names=None):
    """``hspace-studio FILE ...`` (what the desktop entry runs) means ``gui FILE ...``
    (after the global options)."""
    names = COMMANDS if names is None else names
    head, rest = _global_options(argv)
    if rest and rest[0] not in names and not rest[0].startswith("-") and os.path.exists(rest[0]):
        return head + ["gui"] + rest
    return list(argv)


def _global_options(argv):
    """(the global options before the command, the rest)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--domain":
            i += 2
        elif a == "--debug" or a.startswith("--domain="):
            i += 1
        else:
            break
    return list(argv[:i]), list(argv[i:])


def domain_option(argv):
    """The value of the global ``--domain`` option in ``argv`` (before the command), or None."""
    head, _ = _global_options(argv)
    name = None
    for i, a in enumerate(head):
        if a == "--domain" and i + 1 < len(head):
            name = head[i + 1]
        elif a.startswith("--domain="):
            name = a.split("=", 1)[1]
    return name


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    from ..app.errors import error_message, is_expected
    from ..core.errors import Cancelled

    try:
        from ..domains import DOMAINS, ENV, chosen

        name = domain_option(argv) or os.environ.get(ENV) or None
        if name is not None and name not in DOMAINS and domain_option(argv) is not None:
            name = None  # an unknown --domain: the parser says so
        with chosen(name) as domain:  # the toy faces unless a domain was chosen
            ap = build_parser(domain)
            argv = route_files(argv, commands(domain))
            if "--list-h-points" in argv:  # before the command's required options are asked for
                from .common import list_h_points

                try:
                    return list_h_points(_global_options(argv)[1])
                except SystemExit as e:
                    return int(e.code or 0)
            args = ap.parse_args(argv)
            if args.command is None:
                from .gui_cmd import run_gui

                return run_gui(None)
            return int(args.func(args) or 0)
    except ArgumentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("cancelled", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        hint = "" if is_expected(e) else " (run with --debug for details)"  # a bug
        print(f"error: {error_message(e)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
