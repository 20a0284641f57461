"""Backbones, the hardware they run on, and the adapter methods attached to them."""
