"""Framework training images by region, without the (heavy) ``sagemaker`` SDK.

The table is the SDK's ``image_uri_config/xgboost.json`` for the script-mode framework image
``sagemaker-xgboost:<version>``: every framework version is published from the same registry
account per region. Regions or frameworks outside it need an explicit ``image_uri``.
"""

from __future__ import annotations

from cvtune.errors import ConfigError

XGBOOST_VERSIONS = ("0.90-1", "0.90-2", "1.0-1", "1.2-1", "1.2-2", "1.3-1", "1.5-1", "1.7-1", "2.1-0")

XGBOOST_REGISTRIES = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "341280168497",
    "ca-west-1": "190319476487",
    "cn-north-1": "450853457545",
    "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770",
    "eu-central-2": "680994064768",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-south-2": "104374241257",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902",
    "us-iso-east-1": "833128469047",
    "us-isob-east-1": "281123927165",
    "us-isof-east-1": "108575199400",
    "us-isof-south-1": "124985052026",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}

FRAMEWORKS = {"xgboost": ("sagemaker-xgboost", XGBOOST_VERSIONS, XGBOOST_REGISTRIES)}


def _domain(region: str) -> str:
    if region.startswith("cn-"):
        return "amazonaws.com.cn"
    if region.startswith("us-isob-"):
        return "sc2s.sgov.gov"
    if region.startswith("us-isof-"):
        return "csp.hci.ic.gov"
    if region.startswith("us-iso-"):
        return "c2s.ic.gov"
    return "amazonaws.com"


def check_framework(framework: str, version: str, field_prefix: str = "settings") -> None:
    """Raise ConfigError unless ``framework:version`` is in the table."""
    if framework not in FRAMEWORKS:
        raise ConfigError(
            f"{field_prefix}.framework",
            f"no built-in image table for framework {framework!r} (known: {', '.join(FRAMEWORKS)})",
            "set image_uri to the training image to use",
        )
    _repo, versions, _registries = FRAMEWORKS[framework]
    if version not in versions:
        raise ConfigError(
            f"{field_prefix}.framework_version",
            f"unknown {framework} version {version!r} (known: {', '.join(versions)})",
            "pick a known version or set image_uri",
        )


def framework_image_uri(framework: str, version: str, region: str | None, field_prefix: str = "settings") -> str:
    """The ECR URI of the framework's training image in ``region``."""
    check_framework(framework, version, field_prefix)
    repository, _versions, registries = FRAMEWORKS[framework]
    if not region:
        raise ConfigError(
            f"{field_prefix}.region_name",
            "no AWS region to look the training image up in",
            "set region_name (or a region on the AWS connection), or set image_uri",
        )
    if region not in registries:
        raise ConfigError(
            f"{field_prefix}.region_name",
            f"no {repository} image registry known for region {region!r}",
            "set image_uri to the training image's full URI in that region",
        )
    return f"{registries[region]}.dkr.ecr.{region}.{_domain(region)}/{repository}:{version}"
