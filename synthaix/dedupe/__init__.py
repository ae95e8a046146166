"""Exact and near-duplicate removal, persistent in LanceDB."""

import os

# Lance logs through Rust's env_logger; its warnings ("no existing dataset ... will be created")
# are routine here and would clutter `synthaix build`. LANCEDB_LOG set by the user still wins.
os.environ.setdefault("LANCEDB_LOG", "error")
