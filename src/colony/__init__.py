"""Colony: a marketplace of independent services that runs as one process or many."""
