"""Framework-free core: frozen records and numpy computations. Imports numpy only."""
