"""The daemon: the one place where a source, the tracker, an engine and the sockets meet.

loop.py runs source -> tracker -> publisher and serves commands between frames (commands.py,
publisher.py); wiring.py builds it from a configuration (config.py); metrics.py, stats.py,
sdnotify.py and security.py are its service side. Nothing is imported here."""
