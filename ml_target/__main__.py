from ml_target.cli import main

raise SystemExit(main())
