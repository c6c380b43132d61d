"""herd_tools: the `herd` command and its tools (load generator, demo, experiments); not an API."""
