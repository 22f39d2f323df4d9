from xaynet.cli import main

raise SystemExit(main())
