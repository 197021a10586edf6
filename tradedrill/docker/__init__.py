"""The Docker side of the docker provider (issue 17): the engine's lifecycle (``engine``), locally built images
(``images``), the per-run label and its sweep (``labels``), and the nodes as testcontainers containers
(``nodes``). Nothing here is imported unless a run asks for ``--provider docker``."""
