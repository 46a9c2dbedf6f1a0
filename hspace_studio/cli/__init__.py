"""The ``hspace-studio`` command line.

Each subcommand lives in its own module and registers itself through
``add_parser(subparsers)`` and a ``run(args)`` function. Errors the user can cause
end the program with a one-line message and a non-zero exit status, never a traceback
(``--debug`` shows it).
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
    "supervised": "hspace_studio.cli.discover_cmd",
    "disentangle": "hspace_studio.cli.discover_cmd",
    "name": "hspace_studio.cli.discover_cmd",
    "demo": "hspace_studio.cli.demo_cmd",
    "evaluate": "hspace_studio.cli.evaluate_cmd",
}


class ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        raise ArgumentError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="hspace-studio",
                 description="Find and apply semantic directions in the h-space of diffusion models.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)
    seen = set()
    for name, modname in COMMANDS.items():
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


def route_files(argv):
    """``hspace-studio FILE ...`` (what the desktop entry runs) means ``gui FILE ...``."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-") and os.path.exists(argv[0]):
        return ["gui"] + list(argv)
    return list(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    from ..core.errors import Cancelled, HSpaceError

    try:
        ap = build_parser()
        argv = route_files(argv)
        args = ap.parse_args(argv)
        from ..domains import ensure

        ensure()  # the toy faces unless a domain was chosen
        if args.command is None:
            from .gui_cmd import run_gui

            return run_gui("default")
        return int(args.func(args) or 0)
    except ArgumentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("cancelled", file=sys.stderr)
        return 130
    except (HSpaceError, ValueError, IndexError, OSError) as e:
        if debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              f"(run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
