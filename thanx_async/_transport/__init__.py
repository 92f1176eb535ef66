"""Transport policy: the wire (aiohttp), auth, rate limiting and retries.

The transport knows requests and responses, never batches or jobs.
"""
