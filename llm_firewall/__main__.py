"""`python -m llm_firewall` is the same as the `llm-firewall` command."""

from llm_firewall.tools.cli import main

raise SystemExit(main())
