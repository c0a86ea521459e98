"""Scoring API (BentoML) and the scoring it shares with the nightly batch."""
