"""Hosts: first contact over SSH (bootstrap), pyinfra deploys, and custom facts."""
