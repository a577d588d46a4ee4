"""llm-firewall: an inspecting, enforcing reverse proxy for OpenAI-compatible APIs."""

__version__ = "0.1.0"
