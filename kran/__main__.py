from kran.cli.main import main

raise SystemExit(main())
