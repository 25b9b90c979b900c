"""The kernel: hook specifications, the plugin manager, the run spec, the stage values, the evidence schema and the runner (the one caller of hooks)."""
