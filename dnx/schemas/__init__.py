"""The files dnx writes and reads (artifact manifest, engine manifest, certificate): one reader each."""
