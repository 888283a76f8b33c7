"""Sport scenarios and the simulator that turns them into players' signals and labels (numpy only)."""

from fusion_edge.scenarios.catalogue import Scenario, get_scenario, load_catalogue
from fusion_edge.scenarios.simulator import ArraySampleSource, SimulatedSession, simulate_session
from fusion_edge.scenarios.vocabulary import ACTIONS, TACTICS

__all__ = [
    "ACTIONS",
    "TACTICS",
    "ArraySampleSource",
    "Scenario",
    "SimulatedSession",
    "get_scenario",
    "load_catalogue",
    "simulate_session",
]
