"""Rich drawing of what the compute modules return: one module per command, no computing here."""
