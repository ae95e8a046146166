"""`python -m flows.server_process PARENT_PID PORT`: Prefect's API server for one build, exiting
when the build process is gone (however it ended), so no server outlives its build."""

from __future__ import annotations

import gc
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
    # The boot is imports and the app's routes: 290,000 objects that live as long as the
    # server. Python's collector would walk them again and again (0.8 s); it is off while
    # they are made, and they are then left out of its walks.
    gc.disable()
    import uvicorn
    from prefect.server.api.server import create_app

    _repossess_expired_leases()
    app = create_app()  # what uvicorn's factory=True calls; it reads PREFECT__SERVER_*
    gc.freeze()
    gc.enable()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")


def _repossess_expired_leases() -> bool:
    """Run Prefect's repossessor here too, which a server run as ephemeral leaves out: the
    slots of a global concurrency limit (runner.llm_limit) that a killed build held were never
    returned, and after max_concurrency such kills every build of that limit waited forever.
    Their leases are files under PREFECT_HOME (local_server), so the next build's server,
    or a build's beside it, finds them expired."""
    try:  # Prefect's internals: a release that moves them must not stop the server
        from prefect.server.services import perpetual_services, repossessor

        for service in perpetual_services._PERPETUAL_SERVICES:
            if service.function is repossessor.monitor_expired_leases:
                service.run_in_ephemeral = True
                return True
    except (ImportError, AttributeError):
        pass
    print("synthaix: Prefect's repossessor not found; leases of killed builds stay", flush=True)
    return False


if __name__ == "__main__":
    main()
