"""``python -m rustybt_ray`` runs the ``rustybt-ray`` command."""

import sys

from rustybt_ray.app.cli import main

sys.exit(main())
