"""A fleet of daemons behind one results endpoint and one commands endpoint (`samtrack broker`)."""
