"""The `river` command (cli/main.py), its API client (cli/client.py) and its tokens
(cli/login.py): a thin shell around the core (`river/`) and the API."""
