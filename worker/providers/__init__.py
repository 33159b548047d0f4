"""The HTTP transport partner clients share."""
