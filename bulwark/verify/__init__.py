"""Verification of hardened hosts: testinfra controls from inside, probes from outside.

Shares no code path with the deploys it checks (bulwark/hosts/deploys): it reads the effective
state (`sshd -T`, the kernel, `ufw status`, fail2ban's own client) and the inventory's declared
settings, never the deploys' templates or facts.
"""
