from ml_target.provision import main

raise SystemExit(main())
