"""The loopback Mimecast used by the demo, the tests and the benchmarks."""

from collector.simulator.flow import Filter, MailFlow, MixedFlow, SimMessage
from collector.simulator.quota import Bucket
from collector.simulator.server import ORDERS, Credentials, Fault, Recorded, Simulator

__all__ = ["ORDERS", "Bucket", "Credentials", "Fault", "Filter", "MailFlow", "MixedFlow", "Recorded", "SimMessage",
           "Simulator"]
