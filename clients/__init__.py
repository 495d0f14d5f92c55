"""What talks to the server or runs its searches from a terminal: the `rstar` command line
(cli.py), the Python client (client.py) and the solver `rstar eval --url` evaluates a running
server with (eval.py)."""
