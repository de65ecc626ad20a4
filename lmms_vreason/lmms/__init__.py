"""The lmms-eval adapter: the backend, its argument schema, media reading and the plugin hooks.

Importing this package imports nothing from lmms-eval; the backend module does, when lmms-eval
loads it through the plugin's entry point.
"""
