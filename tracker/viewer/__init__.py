"""`samtrack view`: a web server (server.py) and its page (static/) relaying the daemon's protocol to browsers."""
