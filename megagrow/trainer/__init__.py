"""The trainer: the loop (:mod:`.loop`, ``megagrow train``), what a run carries between steps (:mod:`.run_state`),
a growth transition applied to the live engine (:mod:`.transition`), and what one step needs around the model: the
LR schedule (:mod:`.lr_schedule`), precision, phase batching, non-finite-step faults, deferred step statistics,
evaluation, the ETA, profiling and the host allocator. Checkpoints and resume are :mod:`megagrow.checkpointing`'s;
the distributed engine is :mod:`megagrow.distributed`'s; what changes the model is :mod:`megagrow.growth`'s."""
