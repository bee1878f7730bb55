"""The pattern classes, written once (asyncio source): redpat.asyncio uses them as they are,
and the build turns them into redpat/_sync (for redpat.Client) with unasync."""
