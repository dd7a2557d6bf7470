"""The fleet: heartbeat, presence (online/offline), list/detail/patch/delete, admin view."""
