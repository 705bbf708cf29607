from vipgate.cli import main

raise SystemExit(main())
