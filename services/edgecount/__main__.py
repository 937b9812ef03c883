from edgecount.cli import main

raise SystemExit(main())
