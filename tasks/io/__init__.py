"""Input and output on any fsspec filesystem (local, s3://, http), for every stage: `storage` (atomic writes,
reads, shard names), `layout` (every path under the output root), `compressed` (decompressing readers that
never end a cut file quietly), `readers` (table rows and whole files, with the line of what is malformed)
and `secrets` (credentials by reference, resolved in memory)."""
