"""The runtime: starts the services a topology places here and binds clients to the rest."""

from colony.platform.runtime.definition import ServiceContext, ServiceDefinition
from colony.platform.runtime.runtime import Runtime
from colony.platform.runtime.topology import Placement, Topology

__all__ = ["Placement", "Runtime", "ServiceContext", "ServiceDefinition", "Topology"]
