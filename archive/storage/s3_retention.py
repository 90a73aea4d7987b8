"""S3 Object Lock retention for what the archive keeps for good: originals (objects/) and manifests (runs/).

ARCHIVE_S3_RETENTION=governance:DAYS or compliance:DAYS (or S3Store(..., retention=...)): every original and manifest
is written with that Object Lock mode and a retain-until date DAYS from its write, so that the server refuses to
delete or overwrite that version until then (compliance: nobody can; governance: only who may bypass it). A bucket
without Object Lock is refused when the store opens, in one line: nothing would be protected.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..errors import ConfigurationError

KEPT_PREFIXES = ("objects/", "runs/")
_SPEC = re.compile(r"(governance|compliance):([0-9]+)")


@dataclass(frozen=True)
class Retention:
    mode: str  # "GOVERNANCE" or "COMPLIANCE", as S3 spells it
    days: int

    @classmethod
    def parse(cls, spec: str) -> "Retention":
        match = _SPEC.fullmatch(spec.strip().lower())
        if not match or int(match.group(2)) < 1:
            raise ConfigurationError(f"retention {spec!r}: give MODE:DAYS, MODE governance or compliance and DAYS "
                                     "at least 1 (e.g. governance:30, compliance:3650)")
        return cls(match.group(1).upper(), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.mode.lower()}:{self.days}"

    def applies_to(self, key: str) -> bool:
        return key.startswith(KEPT_PREFIXES)

    def put_arguments(self) -> dict:
        """The PutObject / CreateMultipartUpload arguments of a write made now."""
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=self.days)
        return {"ObjectLockMode": self.mode, "ObjectLockRetainUntilDate": until}


def check_bucket(client, bucket: str, retention: Retention) -> None:
    """Refuse a bucket whose Object Lock is not enabled: retention could not be kept there."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        config = client.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration") or {}
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"):
            config = {}
        else:
            raise ConfigurationError(f"s3://{bucket}: cannot read its Object Lock configuration ({code or exc}), so "
                                     f"retention {retention} cannot be kept") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"s3://{bucket}: cannot read its Object Lock configuration ({exc})") from None
    if config.get("ObjectLockEnabled") != "Enabled":
        raise ConfigurationError(f"s3://{bucket} has no S3 Object Lock: originals and manifests cannot be kept under "
                                 f"{retention} retention there (create the bucket with Object Lock enabled, or unset "
                                 "ARCHIVE_S3_RETENTION)")
