"""`python -m ml_target.verify ...`: the `verify` command on its own."""

from ml_target.verify.command import main

raise SystemExit(main())
