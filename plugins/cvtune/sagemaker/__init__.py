"""Everything SageMaker: its settings, the training-job backend, request builders, code packaging, throttling, registry and batch transform.

Nothing here imports boto3 at module level; clients are made through the amazon provider's hooks.
"""
