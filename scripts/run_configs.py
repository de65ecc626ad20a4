#!/usr/bin/env python
"""Run paper-experiment configs through lmms-eval (logic: :mod:`lmms_vreason.experiments.launcher`).

Examples::

    python scripts/run_configs.py 'model_configs/t1-7b-32f128-*.yaml' --output-root runs --dry-run
    python scripts/run_configs.py model_configs/t4-*.yaml --launcher plain --limit 5 -- --verbosity DEBUG
"""

from lmms_vreason.experiments.launcher import main

if __name__ == "__main__":
    raise SystemExit(main())
