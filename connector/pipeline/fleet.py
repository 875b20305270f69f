"""One config per fleet: a worker refuses the tasks of a run started with another config.

Workers read their config once, at start. A run records the fingerprint and file of the
config it was started with (`steps/start.py`); every task of the run compares it with the
fingerprint of its own process's config. A difference (another file given to `connector
sync -c`, or an edit the workers have not been restarted for) would carry the run out
with rules nobody asked for, so the task refuses: the run fails with a message naming
both files and fingerprints, and nothing is written to the PIM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.pipeline.runs import RunRecord
    from connector.pipeline.services import Services

NOT_A_FILE = "(not read from a file)"


def config_mismatch(s: Services, record: RunRecord) -> str | None:
    """Why this process must not work on `record`'s run, or None when its config is the
    run's (or the run recorded none: a record written before fingerprints existed)."""
    if not record.config_hash or record.config_hash == s.config_hash:
        return None
    return (
        f"config mismatch: run {record.run_id} was started with config "
        f"{record.config_path or NOT_A_FILE} (fingerprint {record.config_hash}), but this "
        f"worker loaded {s.config.path or NOT_A_FILE} (fingerprint {s.config_hash}); a "
        f"worker reads its config once, at start: restart every worker with the config "
        f"that starts the runs"
    )
