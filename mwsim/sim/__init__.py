"""The simulator: a simpy model of the MultiWorld runtime that predicts a run's History."""

from mwsim.sim.engine import Simulation, simulate
from mwsim.timing import MODELS, RuntimeModel, detection_window, model_for

__all__ = ["MODELS", "RuntimeModel", "Simulation", "detection_window", "model_for", "simulate"]
