"""AWS pieces of the SageMaker backend: its settings, request builders, code packaging, throttling.

Nothing here imports boto3 at module level; clients are made through the amazon provider's hooks.
"""
