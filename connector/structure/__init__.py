"""The PIM's asset family structure as this connector sees it from the outside.

`connector structure apply` brings the PIM's asset families in line with a YAML file
(spec.py reads it, diff.py compares, apply.py writes). Applying is idempotent: every item
is read from the live PIM first and only the fields that differ are PATCHed, so re-applying
the same file sends no write at all and reports every item "unchanged". Only what the file
states is compared: labels the file does not mention and properties it leaves out are left
as the PIM has them.

`connector check` (check.py) reads that live structure too, to find mapping mistakes before
a sync runs; dam_probe.py and sample.py are its DAM side (each source probed, the mapping
tried on sampled records).
"""

from connector.structure.apply import ApplyItem, ApplyReport, apply_structure
from connector.structure.check import CheckReport, Finding, check_family, run_check
from connector.structure.spec import (
    StructureFileError,
    StructureSpec,
    load_structure_file,
    parse_structure,
)

__all__ = [
    "ApplyItem",
    "ApplyReport",
    "CheckReport",
    "Finding",
    "StructureFileError",
    "StructureSpec",
    "apply_structure",
    "check_family",
    "load_structure_file",
    "parse_structure",
    "run_check",
]
