"""Entry point of the packaged application: the same as `hspace-studio`."""
import sys

from hspace_studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
