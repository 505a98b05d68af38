"""What the attack addons share: reading the lab channel inside mitmproxy's TCP flows, the attacker's
evidence, and the relay that terminates the channel on both sides. Each addon in `addons/` is one
screen; everything they have in common lives here, once."""
