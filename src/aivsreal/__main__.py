import sys

from aivsreal.cli import main

sys.exit(main())
