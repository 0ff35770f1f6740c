import sys

from carecall.cli import main

# Guarded: worker processes started by a fork server or spawn (billing.parallel, in the web
# server) import the main module under another name, and must not run the command again.
if __name__ == "__main__":
    sys.exit(main())
