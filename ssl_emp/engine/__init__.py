"""The training engine: the loop (:mod:`~ssl_emp.engine.trainer`), its callbacks, the builder
that turns a config into the run's parts, and what a run needs around them (optimizer and
schedule, checkpoints, run directory, seeding, device, processes)."""
