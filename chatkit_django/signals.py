"""Signals chatkit_django sends, and the receivers it connects for itself."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a thread and everything in it were deleted through the store or the admin.
# Arguments: sender (the Thread model), thread_id (str), user (who deleted it, or None).
thread_deleted = Signal()
