"""The method: controller, objective, Lite pruning, sampler and the decode loop (plain torch).

Nothing here imports lmms-eval or a specific model family; settings (:mod:`.settings`) import no
torch either. Importing this package has no side effects.
"""
