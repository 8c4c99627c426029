"""Base configs shared by the experiment files in experiments/."""
