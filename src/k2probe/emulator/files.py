"""The emulator's files API: uploads kept in memory with Moonshot's limits, referenced as ms://<file_id>."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from k2probe.emulator.contract import ApiError, bad_request

PURPOSES = ("file-extract", "image", "video", "batch")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "ok"}


class FileStore:
    """Uploaded files: at most 100 MB each, 1000 files, 10 GB in all."""

    def __init__(self, max_file_bytes: int = 100 * 1024 * 1024, max_files: int = 1000,
                 max_total_bytes: int = 10 * 1024 * 1024 * 1024) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_total_bytes = max_total_bytes
        self._files: dict[str, StoredFile] = {}

    def add(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        if purpose not in PURPOSES:
            raise bad_request(f"Invalid request: purpose must be one of {', '.join(PURPOSES)}")
        if len(data) > self.max_file_bytes:
            raise bad_request(f"file size exceeds the limit: {len(data)} bytes > {self.max_file_bytes} bytes")
        if len(self._files) >= self.max_files:
            raise bad_request(f"too many files: the limit is {self.max_files}; delete some first")
        if sum(len(f.data) for f in self._files.values()) + len(data) > self.max_total_bytes:
            raise bad_request("total file storage exceeds the limit of 10 GB; delete some first")
        stored = StoredFile("file-" + secrets.token_hex(12), filename, purpose, data, int(time.time()))
        self._files[stored.id] = stored
        return stored.public()

    def list(self) -> list[dict[str, Any]]:
        return [f.public() for f in self._files.values()]

    def find(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def get(self, file_id: str) -> dict[str, Any]:
        stored = self._files.get(file_id)
        if stored is None:
            raise ApiError(404, "resource_not_found_error", f"file {file_id} not found")
        return stored.public()

    def delete(self, file_id: str) -> dict[str, Any]:
        if self._files.pop(file_id, None) is None:
            raise ApiError(404, "resource_not_found_error", f"file {file_id} not found")
        return {"id": file_id, "object": "file", "deleted": True}
