"""Multipart uploads, shared by the scoring and explanation routes."""

from __future__ import annotations

from fastapi import UploadFile

from service import errors


async def read_upload(upload: UploadFile, limit: int, label: str | int) -> bytes:
    """Read an upload, refusing (413) as soon as it is larger than the per-video limit."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise errors.VideoTooLarge(f"upload exceeds max_video_bytes={limit}", item=label)
    return data
