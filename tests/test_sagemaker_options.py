"""The sagemaker option schema holds every check (patterns and checks across keys too), so the
connection extra, --backend-config and the backend share one set of `field: problem — fix` errors."""

from __future__ import annotations

import pytest

from cvtune.errors import ConfigError
from cvtune.options import parse_options
from cvtune.platform import platform_for
from cvtune.sagemaker.config import SageMakerConfig
from cvtune.sagemaker.options import SageMakerOptions

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BASE = {"role_arn": ROLE, "s3_prefix": "s3://bucket/cvtune/", "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}


@pytest.mark.parametrize(("change", "field", "says"), [
    ({"use_spot_instances": True}, "use_spot_instances", "set keep_alive_period_s to 0"),  # keep-alive 1800 by default
    ({"role_arn": ""}, "role_arn", "is required for the sagemaker backend"),
    ({"s3_prefix": "bucket/cvtune"}, "s3_prefix", "is not an s3://bucket/prefix URI"),
    ({"instance_type": "m5.large"}, "instance_type", "is not a SageMaker instance type"),
    ({"region_name": "Frankfurt"}, "region_name", "is not an AWS region name"),
    ({"vpc_config": {"Subnets": ["subnet-1"]}}, "vpc_config.SecurityGroupIds", "non-empty list"),
    ({"tags": {"cvtune:run": "x"}}, "tags.cvtune:run", "reserved"),
])
@pytest.mark.parametrize("source", ["connection cvtune_default extra", "--backend-config"])
def test_the_schema_checks_across_keys_wherever_the_settings_come_from(source, change, field, says):
    settings = {**BASE, **change}
    with pytest.raises(ConfigError) as schema:
        parse_options(SageMakerOptions, settings, source=source, backend="sagemaker")
    assert schema.value.field == f"{source}.{field}" and says in str(schema.value)
    # the connection extra and --backend-config go through the platform factory, the backend through
    # SageMakerConfig: the same error, word for word
    with pytest.raises(ConfigError) as factory:
        platform_for({"backend": "sagemaker", **settings}, source=source)
    with pytest.raises(ConfigError) as config:
        SageMakerConfig.from_options(settings, source=source)
    assert str(factory.value) == str(config.value) == str(schema.value)


def test_spot_without_a_warm_pool_is_accepted():
    config = SageMakerConfig.from_options({**BASE, "use_spot_instances": True, "keep_alive_period_s": 0})
    assert config.use_spot_instances and config.keep_alive_period_s == 0 and config.s3_prefix == "s3://bucket/cvtune"
