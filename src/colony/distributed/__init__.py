"""The multi-process topology on one machine: a plan of processes, a supervisor that keeps
them running, and a NATS server of its own when none is given."""
