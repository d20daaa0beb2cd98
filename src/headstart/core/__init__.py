"""Layer 0: configuration, errors, atomic I/O, the labelled set, and the typed run context and unit results
(stdlib and numpy only; every other layer may import it)."""
