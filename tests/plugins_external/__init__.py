"""Tests that install a plugin from its own distribution, as a third party would."""
