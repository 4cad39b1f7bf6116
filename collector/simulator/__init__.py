"""The loopback Mimecast used by the demo, the tests and the benchmarks."""

from collector.simulator.flow import Filter, MailFlow, SimMessage
from collector.simulator.server import Credentials, Fault, Recorded, Simulator

__all__ = ["Credentials", "Fault", "Filter", "MailFlow", "Recorded", "SimMessage", "Simulator"]
