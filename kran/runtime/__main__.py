from kran.runtime.cli import main

raise SystemExit(main())
