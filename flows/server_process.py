"""`python -m flows.server_process PARENT_PID PORT`: Prefect's API server for one build, exiting
when the build process is gone (however it ended), so no server outlives its build."""

from __future__ import annotations

import os
import sys
import threading
import time


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:  # the parent's death re-parents us (to init or a reaper)
        time.sleep(0.25)
    os._exit(0)


def main() -> None:
    parent, port = int(sys.argv[1]), int(sys.argv[2])
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
