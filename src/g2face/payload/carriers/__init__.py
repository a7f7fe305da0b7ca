"""Carriers of the recovery payload: where an encoded payload travels with an image."""
