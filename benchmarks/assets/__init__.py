"""Reference baseline for `llm-firewall bench`: mock upstream, minimal proxy, wrk script, payloads."""
