"""Interchange with other ecosystems: Hugging Face ``transformers`` checkpoints (:mod:`megagrow.interchange.hf`)."""
