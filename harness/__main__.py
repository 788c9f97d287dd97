import sys

from harness.cli import main
from harness.records.store import hold_locks_until_exit

hold_locks_until_exit()  # a command owns the records it writes until it ends (harness.records.store)
sys.exit(main())
