"""Tests of the MQTT bridge and the Supervisor integration."""
