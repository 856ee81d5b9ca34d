"""The ODCS v3 data contracts shipped with segflow (read as package data)."""
