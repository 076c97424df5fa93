"""Tools and agents: the tool loop, built-in tools, the python sandbox, MCP servers."""
