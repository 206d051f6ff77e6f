"""Studies: experiment grids of training runs (:mod:`.experiment`) and the report that compares them with
the published numbers (:mod:`.report`, the numbers in ``claims.yaml``).

The top layer below the command line: it may use training, deployment and measurement alike.
"""
