import sys

from carecall.cli import main

sys.exit(main())
