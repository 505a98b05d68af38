"""The SSH stack's parts (seed 002 §三): keys and host certificates made at run time, the real OpenSSH
sshd started in a private mount namespace with the lab's customer in it, and an SSH man in the middle
on asyncssh that relays to it and records what it read.

Nothing here names another stack, and nothing here imports the checker: the stack module wires these
parts into runs and verdicts.
"""
