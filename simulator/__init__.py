"""The demo CRM with planted truth: a B2B SaaS company whose every probability is known.

Imports only :mod:`crm`.
"""

from simulator.process import SimulationConfig, SimulationResult, simulate, write_simulation

__all__ = ["SimulationConfig", "SimulationResult", "simulate", "write_simulation"]
