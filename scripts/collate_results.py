#!/usr/bin/env python
"""Collate run folders into the paper's Table 1 layout (logic: :mod:`lmms_vreason.experiments.collate`).

Examples::

    python scripts/collate_results.py runs --baseline t1-7b-32f128-base --only 't1-7b-32f128-*'
    python scripts/collate_results.py runs --format csv --output table1.csv
"""

from lmms_vreason.experiments.collate import main

if __name__ == "__main__":
    raise SystemExit(main())
