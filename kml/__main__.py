import sys

from kml.cli import main

sys.exit(main())
