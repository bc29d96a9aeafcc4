from agent.daemon import main

raise SystemExit(main())
