"""`python -m connector.cli` = the `connector` command, wired like the console script.

A process entry point, not library code: like `connector`, it runs tasks.cli, where the
CLI gets its task queue (the composition root chooses the wiring; connector/ imports no
Celery). Nothing imports this module.
"""

from tasks.cli import main

main()
