"""The delivery engine: it alone sends, times, retries and records evidence."""
