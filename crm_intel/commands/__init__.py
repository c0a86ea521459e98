"""CLI command modules: thin wiring over the stage functions, one module per command group."""
