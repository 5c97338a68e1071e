"""S3 credentials of an artifact store, from an Airflow AWS connection.

The amazon provider's ``AwsBaseHook`` reads the connection (access key, secret, session token,
role to assume, region, ``endpoint_url`` in its extra) and resolves it to credentials; the store
gets those explicitly, so it never falls back to boto3's default chain behind the connection's back.
"""

from __future__ import annotations

from typing import Any

from cvtune.errors import ConfigError


def s3_options(aws_conn_id: str | None, region_name: str | None = None, *, source: str = "settings") -> dict[str, Any]:
    """fsspec/s3fs options (``key``, ``secret``, ``token``, ``endpoint_url``, ``region_name``) of ``aws_conn_id``.

    ``None``: s3fs's default chain (environment, ``~/.aws``, instance role) with ``region_name``.
    """
    if aws_conn_id is None:
        return {"region_name": region_name}
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError as exc:
        raise ConfigError(
            f"{source}.aws_conn_id", f"reading s3:// artifacts through connection {aws_conn_id!r} needs the amazon provider",
            "pip install 'apache-airflow-providers-amazon[aiobotocore]'",
        ) from exc
    hook = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region_name, client_type="s3")
    credentials = hook.get_credentials()
    return {
        "key": credentials.access_key,
        "secret": credentials.secret_key,
        "token": credentials.token,
        # the connection's S3 endpoint: its service_config's for s3 if set, else its endpoint_url
        "endpoint_url": hook.conn_config.get_service_endpoint_url("s3"),
        "region_name": hook.conn_region_name,
    }
