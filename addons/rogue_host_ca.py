"""rogue-host-ca: answer the client's SSH connection with a host certificate for the server's name,
signed by the attacker's own SSH CA, and relay to the real sshd.

The certificate names the right host (server.lab) and is in date; only its CA is wrong. A client that
trusts the lab's CA for server.lab (`@cert-authority` in known_hosts) with strict checking finds no
matching CA, knows no plain key for server.lab, and refuses before any password. With `accept-new`
OpenSSH retries with the plain key and, on first contact, adds it: the attacker reads the password and
the command.

mitmproxy does not speak SSH: the hook below is called by the attacker role's SSH port
(`lab.mitm.ssh`), per client connection. Loaded under `mitmdump -s addons/rogue_host_ca.py` it does
nothing; the lab runs it as every other attack:

    mitmlab check --view ssh --attack rogue-host-ca   # the ssh view: every OpenSSH configuration
"""

from lab.mitm.ssh import SshIdentity
from lab.ssh.keys import SshKeys


class RogueHostCa:
    def ssh_identity(self, keys: SshKeys) -> SshIdentity:
        """The attacker's host key with the host certificate its own CA made for the server's name."""
        return SshIdentity(keys.private(keys.attacker_key), keys.certificate(keys.attacker_certificate))


addons = [RogueHostCa()]
