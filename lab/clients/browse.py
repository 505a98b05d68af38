"""The Python victims: a customer's script that opens bank.lab, finds the login form and logs in, with
the standard library (`urllib`, `ssl.create_default_context`) or with `requests`.

    python -m lab.clients.browse urllib https://bank.lab:8443/ --resolve bank.lab:127.0.0.1 \
        --cafile ca.pem --user alice

The password comes in `MITMLAB_PASSWORD` (not on the command line, which the evidence records). It
prints the page it ends on; on failure, the library's own error on stderr, and exits 1. `--resolve`
makes a name mean an address in this process only, as curl's `--resolve` does: the name is still
what TLS checks (SNI and the certificate's name). It imports nothing of the lab's but this package,
so that it starts as fast as a customer's script.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import socket
import ssl
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from typing import Any

TIMEOUT = 10.0


class _FormAction(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form" and self.action is None:
            self.action = dict(attrs).get("action") or ""


def form_action(page: str, base: str) -> str:
    """Where the page's first form posts to, as an absolute URL."""
    parser = _FormAction()
    parser.feed(page)
    if parser.action is None:
        raise LookupError(f"no login form on {base}")
    return urllib.parse.urljoin(base, parser.action)


def with_urllib(entry: str, credentials: dict[str, str], cafile: str, crlfile: str | None) -> str:
    context = ssl.create_default_context(cafile=cafile)
    if crlfile:
        context.load_verify_locations(crlfile)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )
    with opener.open(entry, timeout=TIMEOUT) as page:
        action = form_action(page.read().decode(), page.geturl())
    with opener.open(action, urllib.parse.urlencode(credentials).encode(), timeout=TIMEOUT) as landed:
        text: str = landed.read().decode()
    return text


def with_requests(entry: str, credentials: dict[str, str], cafile: str, crlfile: str | None) -> str:
    import requests

    if crlfile:
        raise SystemExit("requests has no revocation switch of its own")
    with requests.Session() as session:  # verify= on each request: REQUESTS_CA_BUNDLE beats session.verify
        page = session.get(entry, timeout=TIMEOUT, verify=cafile)
        page.raise_for_status()
        action = form_action(page.text, page.url)
        landed = session.post(action, data=credentials, timeout=TIMEOUT, verify=cafile)
        landed.raise_for_status()
        return landed.text


LIBRARIES = {"urllib": with_urllib, "requests": with_requests}


def _resolve(name: str, address: str) -> None:
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return original(address if host == name else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.clients.browse", description=__doc__.split("\n")[0])
    parser.add_argument("library", choices=LIBRARIES)
    parser.add_argument("entry", help="the URL the customer opens")
    parser.add_argument("--resolve", metavar="NAME:ADDRESS", help="what NAME means in this process")
    parser.add_argument("--cafile", required=True, help="the CAs this client trusts (PEM)")
    parser.add_argument("--crlfile", help="check the server's certificate against this CRL (urllib)")
    parser.add_argument("--user", required=True)
    args = parser.parse_args(argv)
    if args.resolve:
        name, _, address = args.resolve.partition(":")
        _resolve(name, address)
    credentials = {"user": args.user, "password": os.environ.get("MITMLAB_PASSWORD", "")}
    try:
        print(LIBRARIES[args.library](args.entry, credentials, args.cafile, args.crlfile))
    except Exception as exc:  # the victim's own words are the point: print them, as the library put them
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
