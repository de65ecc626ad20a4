"""Cost measurements (benchmarks print numbers; tests never time anything).

:mod:`.synthetic` builds random-weight models of a given shape and prompts with a given number of
video tokens, :mod:`.measure` times decoding and samples peak memory, :mod:`.decode_cost` is the CPU
proxy (``vreason bench``) and :mod:`.gpu_figures` the figures that need a GPU (``vreason
gpu-figures``).
"""
