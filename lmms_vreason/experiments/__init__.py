"""Paper experiments: configs (``model_configs/``), the launcher and Table 1 collation (no torch)."""
