"""Test and emulation helpers: stand-in computes and test doubles for networks we cannot ship."""
