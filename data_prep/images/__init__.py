"""``megagrow-prep images``: build Arrow image shards (read by :mod:`megagrow.data.images`).

Readers of raw inputs (:mod:`.idx` IDX files such as MNIST, :mod:`.folders` ``root/<class>/*.png``,
:mod:`.arrays` numpy ``.npz``), the shard writer and build (:mod:`.shards`), the pinned MNIST fetch
(:mod:`.fetch_mnist`) and the command line (:mod:`.cli`).
"""
