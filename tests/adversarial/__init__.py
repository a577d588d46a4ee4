"""Attacks tried from outside, one file per area: each case of the threat model has a test here."""
