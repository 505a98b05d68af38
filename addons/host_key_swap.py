"""host-key-swap: answer the client's SSH connection with a host key of the attacker's own, and relay to
the real sshd.

A client that has never met the server, and accepts a new key on first contact (`accept-new`, or a
user who types "yes"), logs in through the attacker: the attacker reads the password, logs in to the
real server with it, and reads the command and what it printed. A client that remembers the server's
real key (`pinning`) sees "REMOTE HOST IDENTIFICATION HAS CHANGED" and sends nothing.

mitmproxy does not speak SSH: the hook below is called by the attacker role's SSH port
(`lab.mitm.ssh`), per client connection. Loaded under `mitmdump -s addons/host_key_swap.py` it does
nothing; the lab runs it as every other attack:

    mitmlab check --view ssh --attack host-key-swap   # the ssh view: every OpenSSH configuration
"""

from lab.mitm.ssh import SshIdentity
from lab.ssh.keys import SshKeys


class HostKeySwap:
    def ssh_identity(self, keys: SshKeys) -> SshIdentity:
        """The attacker's own plain host key: no certificate, so no CA can vouch for it."""
        return SshIdentity(keys.private(keys.attacker_key))


addons = [HostKeySwap()]
