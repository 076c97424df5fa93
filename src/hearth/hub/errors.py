"""What can go wrong while pulling a model, as branches of the one tree in ``hearth.errors``.

Each message names the next step: check the repo name, set a token, re-run to resume,
free disk space. ``UserError`` children are the caller's to fix; the rest are the network's
or the hub's fault.
"""

from __future__ import annotations

from hearth.errors import HearthError, UserError


class RepoNotFound(UserError):
    status = 404
    code = "repo_not_found"


class AccessDenied(UserError):
    """A private or gated repository, or a token without the right to read it."""

    status = 403
    code = "access_denied"


class NoMatchingFiles(UserError):
    status = 404
    code = "no_matching_files"


class HubError(HearthError):
    """The hub answered something we cannot use (5xx, malformed JSON, unsafe paths)."""

    status = 502
    code = "hub_error"


class DownloadInterrupted(HubError):
    """The connection dropped; the partial file is kept so the next run resumes."""

    code = "download_interrupted"


class ChecksumMismatch(HearthError):
    code = "checksum_mismatch"


class DiskError(HearthError):
    code = "disk_error"
