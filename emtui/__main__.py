import sys

from emtui.cli import main

sys.exit(main())
