"""Real clients as victims on the real-TLS stack (docs/tls.md).

adapters.py   each client and its configurations (the `clients` view's columns), and the words it
              refuses in, read as data
job.py        what a client is given (`Target`), runs (`Invocation`) and is read as (`Reading`)
run.py        running a client's job as processes, bounded in time
browse.py     the Python victims' own program (urllib, requests)
visit.py      a visit as the client role makes it: the lab's trust files, evidence, the key log
"""
