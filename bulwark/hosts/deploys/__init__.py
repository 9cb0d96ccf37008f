"""pyinfra deploys, one module per area; `harden` runs them all in a lockout-safe order.

Plain pyinfra works too: `pyinfra hosts/<env>.py bulwark.hosts.deploys.harden.harden`.
"""
