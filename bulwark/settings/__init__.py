"""Typed models of stack config and host data; every default is declared here, once."""
