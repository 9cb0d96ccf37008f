"""The bottom layer every other part stands on: connection-budget arithmetic, the driver
verdict for prepared statements, PgBouncer's SCRAM verifiers, and the label and metadata keys
the cloud components stamp on resources for policy to read. Pure Python: it imports nothing
from bulwark above it (tests/unit/test_layers.py)."""
