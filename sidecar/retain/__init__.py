"""Tag retention: which artifacts a project's rules keep (Harbor's engine), and later its runs."""
