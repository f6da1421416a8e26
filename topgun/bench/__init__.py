"""``topgun bench``: what a local cluster does on this machine, measured as a user would."""
