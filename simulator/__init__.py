"""The demo CRM with planted truth: a B2B SaaS company whose every probability is known.

Imports only :mod:`crm`.
"""

from simulator.config import SimulationConfig, SimulationResult
from simulator.drift import ChannelVolumeDrift, Drift, SegmentConversionDrift, parse_drift
from simulator.run import simulate
from simulator.tables import write_simulation

__all__ = [
    "ChannelVolumeDrift",
    "Drift",
    "SegmentConversionDrift",
    "SimulationConfig",
    "SimulationResult",
    "parse_drift",
    "simulate",
    "write_simulation",
]
