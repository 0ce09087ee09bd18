"""A storage that fails halfway through a write, like a disk filling up."""

import os
from typing import Any

from django.core.files.storage import FileSystemStorage


class FailingStorage(FileSystemStorage):
    """Writes the first chunk of a file, then raises ``OSError``."""

    def _save(self, name: str, content: Any) -> str:
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            for chunk in content.chunks(chunk_size=4):
                f.write(chunk)
                raise OSError("No space left on device")
        raise OSError("No space left on device")
