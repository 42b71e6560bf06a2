"""Checkpointing: the run directory (:mod:`.rundir`: lock, history, metrics and checkpoint layout), sharded
checkpoints written and read atomically as safetensors + JSON (:mod:`.store`), a checkpoint as a plain model
(:mod:`.model`: eval, sample, export), and what may change on resume (:mod:`.resume`)."""
