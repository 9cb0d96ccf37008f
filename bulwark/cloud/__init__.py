"""Pulumi ComponentResources of the cloud platform, the program that wires them, and its plan.

Components: project APIs, network, secrets, database, pooler, cache, service, CI identity.
`platform.build` is the program (`__main__.py` calls it); `plan.run_plan` runs it under
Pulumi mocks, with no credentials and no Pulumi CLI.
"""
