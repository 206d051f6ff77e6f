"""Deployment: the format table (:mod:`.formats`), artefact metadata (:mod:`.metadata`), export and its
verification (:mod:`.export`), the runtimes that load every artefact (:mod:`.runtimes`), int8
quantization (:mod:`.quantize`), BatchNorm folding (:mod:`.fuse`) and the latency benchmark (:mod:`.bench`)."""
