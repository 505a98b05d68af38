"""Getting on the path at the link layer (docs/arp.md): ARP poisoning with scapy, the kernel's ARP cache
as evidence, the static-ARP defence, and a detector in the spirit of arpwatch and ettercap's arp_cop."""
