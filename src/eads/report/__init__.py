"""Tables and plots, read from run directories (nothing here trains)."""
