"""The one boundary to private shapes of the libraries graphops builds on (see langgraph.py)."""
