"""Base configs shared by the experiment files in fajax/experiments/."""
