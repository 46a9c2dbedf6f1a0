"""Start the hspace-studio desktop application: python main.py [--model M]."""
import sys

from hspace_studio.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args if args and args[0] == "gui" else ["gui", *args]))
