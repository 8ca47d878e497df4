from halotune.cli.main import main

raise SystemExit(main())
