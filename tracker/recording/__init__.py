"""Recording and replay: the format a daemon records in (`format.py`), the writer thread (`writer.py`), a
recording read back as a source with its sessions, commands and results (`replay.py`), the verification of a
replay (`verify.py`), and what a source argument names, a recording or a source string (`inputs.py`)."""
