"""Entry point: ``python3 -m kfn_runtime`` with the runtime directory on ``PYTHONPATH``."""

from kfn_runtime import server

if __name__ == "__main__":
    server.main()
