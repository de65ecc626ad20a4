"""Offline analysis of finished runs: figures, efficiency tables, paired run comparison.

Inputs are only files on disk (lmms-eval's results/samples files and V-Reason telemetry), so none
of this imports the model, and torch only where :mod:`traces` replays the decode loop's entropy
tracker. Modules: :mod:`runs` (the one reader of run folders: results, samples, telemetry),
:mod:`scores` (per-doc scores), :mod:`stats` (paired bootstrap, McNemar, sign-flip), :mod:`compare`
(two runs, gate), :mod:`traces` and :mod:`plots` (figures), :mod:`efficiency` (Tables 5/6),
:mod:`tables` and :mod:`cli` (rendering and command-line plumbing). Importing this package has no
side effects.
"""
