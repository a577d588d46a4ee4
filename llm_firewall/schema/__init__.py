"""Typed YAML documents (rules, policies): positions, pydantic models, JSON Schema."""
