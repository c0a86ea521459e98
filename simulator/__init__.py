"""The demo CRM with planted truth: a B2B SaaS company whose every probability is known.

Imports only :mod:`crm`.
"""

from simulator.config import SimulationConfig, SimulationResult
from simulator.run import simulate
from simulator.tables import write_simulation

__all__ = ["SimulationConfig", "SimulationResult", "simulate", "write_simulation"]
